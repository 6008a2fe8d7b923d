from ballast.runtime import run_service
from ballast.slo_engine.app import NAME, SloEngineSettings, build, tune_gc

if __name__ == "__main__":
    tune_gc()
    run_service(NAME, SloEngineSettings, build)
