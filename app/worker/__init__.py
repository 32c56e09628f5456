"""The worker agent: runs the jobs a driver schedules on this machine.

It imports nothing from ``app`` but ``app.protocol`` so it can run on a bare VM with only
Python and aiohttp (which it loads only when a job moves files from or to cloud storage).
"""
