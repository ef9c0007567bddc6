from runyard.auth.models import Base
from runyard.shared.migrations import run_env

run_env(Base.metadata, schema="auth", url_env="AUTH_DATABASE_URL")
