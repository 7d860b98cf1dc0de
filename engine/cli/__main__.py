from engine.cli.app import app

app()
