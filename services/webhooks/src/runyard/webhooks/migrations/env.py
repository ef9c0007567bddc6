from runyard.shared.migrations import run_env
from runyard.webhooks.models import Base

run_env(Base.metadata, schema="webhooks", url_env="WEBHOOKS_DATABASE_URL")
