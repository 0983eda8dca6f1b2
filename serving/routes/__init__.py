"""The prediction API's routes, one router per concern (serving.api includes them all)."""
