from ballast.runtime import run_service
from ballast.slo_engine.app import NAME, SloEngineSettings, build

if __name__ == "__main__":
    run_service(NAME, SloEngineSettings, build)
