from ballast.incident_bot.app import NAME, IncidentBotSettings, build
from ballast.runtime import run_service

if __name__ == "__main__":
    run_service(NAME, IncidentBotSettings, build)
