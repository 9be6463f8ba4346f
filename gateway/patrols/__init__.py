"""Patrols and location (巡查, seed 4.1): check-ins at checkpoints, the on-duty position trail, the REST routes, the
dashboard's data source and the printable checkpoint QR sheet. Rules and plans: twin/patrols.py; docs/patrols.md."""
