from ballast.policy_gate.app import NAME, PolicyGateSettings, build
from ballast.runtime import run_service

if __name__ == "__main__":
    run_service(NAME, PolicyGateSettings, build)
