"""`leakscan ui`: the findings page over the store (server.py), its queries (query.py), and the
templates both it and `scan --format html` render (render.py). aiohttp and Jinja2 are imported
here only, when the command runs."""
