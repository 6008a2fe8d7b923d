"""What services use at run time to talk to Kubernetes: an API client, informers (list-then-watch caches), a work
queue and controller loop, leader election, server-side apply, Kubernetes Events and CRD install.

Local tooling (the control plane built from source, `make cluster-up`) lives in `ballast.local`, which nothing
here imports.
"""
