from ballast.kube.client import lean_import

# Before anything imports kubernetes_asyncio: the service speaks plain JSON and needs none of its models.
lean_import()

from ballast.reconciler.app import NAME, ReconcilerSettings, build  # noqa: E402
from ballast.runtime import run_service  # noqa: E402

if __name__ == "__main__":
    run_service(NAME, ReconcilerSettings, build)
