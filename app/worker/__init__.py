"""The worker agent: runs the jobs a driver schedules on this machine.

It imports nothing from ``app`` but ``app.protocol`` so it can run on a bare VM with only
Python and aiohttp.
"""
