from botfleet.cli.main import app

app(prog_name="botfleet")
