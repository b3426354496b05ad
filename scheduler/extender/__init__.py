"""The kube-scheduler extender (`gts serve`): filter, prioritize and bind over HTTP(S).

- wire.py: extender v1 messages (Go field names), parsed once; reply checkers.
- service.py: the verbs over the cluster cache and scheduler.policy.
- gangs.py: gang plans, reservations and the bind barrier. Members of a gang are assumed
  homogeneous (the plan is made for min_member copies of the first member seen, as in
  Kubeflow/Volcano gangs); kube-scheduler's extender httpTimeout must exceed
  gang-timeout + gang-bind-grace + 5 s (deploy/ sets 60 s for 30 + 10).
- server.py, metrics.py, logs.py, config.py, runtime.py, cli.py: the process around them.

No preemptVerb is registered: kube-scheduler's own preemption runs, and filter re-checks the
GPUs of the preemptor afterwards.
"""
