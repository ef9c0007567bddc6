from runyard.notifications.models import Base
from runyard.shared.migrations import run_env

run_env(Base.metadata, schema="notifications", url_env="NOTIFICATIONS_DATABASE_URL")
