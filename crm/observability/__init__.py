"""What an operator sees of the running service: probes, metrics, request ids, logs, timings.

* :mod:`.health`: ``/healthz`` (the process serves) and ``/readyz`` (the
  database answers, migrations are applied, which standbys are in use);
* :mod:`.metrics`: Prometheus metrics at ``/metrics``, summed over every
  gunicorn worker (:mod:`.multiprocess` keeps their files);
* :mod:`.request_ids`: an id per request, from a trusted proxy or made here;
* :mod:`.logs`: every log line carries its request's id, as text or one JSON
  object per line, with no query parameter value in it;
* :mod:`.timing`: database time and query count per request, and the
  ``Server-Timing`` header;
* :mod:`.middleware`: the two middleware that put it all on every request.

It is project-level: it never imports the app (``core``), which imports it
for the events only the app sees (throttle rejections, export rows).
"""
