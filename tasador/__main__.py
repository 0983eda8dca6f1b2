from tasador.cli import app

app()
