from runyard.gateway.models import Base
from runyard.shared.migrations import run_env

run_env(Base.metadata, schema="gateway", url_env="GATEWAY_DATABASE_URL")
