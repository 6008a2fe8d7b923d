from ballast.chaos_runner.app import NAME, ChaosRunnerSettings, build
from ballast.runtime import run_service

if __name__ == "__main__":
    run_service(NAME, ChaosRunnerSettings, build)
