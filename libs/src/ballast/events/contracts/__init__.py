"""The bus contracts of each area: payload models, event and command specs, endpoints and subject helpers.

One module per area (`k8s`, `reconcile`, `slo`, `policy`, `chaos`, `incident`), so that a service can be built and its
consumers tested against the published shape before the producing service exists. `ballast.events.catalogue`
aggregates them.
"""
