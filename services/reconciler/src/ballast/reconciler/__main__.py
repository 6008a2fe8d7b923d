from ballast.reconciler.app import NAME, ReconcilerSettings, build
from ballast.runtime import run_service

if __name__ == "__main__":
    run_service(NAME, ReconcilerSettings, build)
