from runyard.experiments.models import Base
from runyard.shared.migrations import run_env

run_env(Base.metadata, schema="experiments", url_env="EXPERIMENTS_DATABASE_URL")
