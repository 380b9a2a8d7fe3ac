"""The library every omnistock benchmark shares; the benchmarks themselves hold only their phases.

* `server`: scratch PostgreSQL databases, the flask CLI, gunicorn on 127.0.0.1, `ledger verify`.
* `client`: KeepAlive, the light HTTP/1.1 client of timed loads, and the `requests` helpers of
  setup calls.
* `load`: the load driver (client threads for a time or over a job list), the CPU meter of the
  gunicorn and PostgreSQL processes, and the summary of a measured cell.
* `report`: machine facts and the fixed-width table renderer.
* `profile`: pyinstrument (`bench/_profile_wsgi.py`) and py-spy profiles, ranked and rendered.

Nothing here measures anything by itself.
"""
