"""Fleet mode (``redis_url``): every server behind a balancer keeps its checkout at the
commit the fleet's Redis says.  Nothing is imported here: ``redis`` is loaded only with
the agent (:mod:`deployhook.fleet.agent`), which the hub imports when ``redis_url`` is set.
"""
