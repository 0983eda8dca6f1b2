"""The scoring artifact: a registered version's model as data only (no pickle), which serving
loads instead of the pickled pipeline (experiments.scoring.artifact)."""
