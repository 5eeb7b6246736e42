"""The configuration: config.ini, then ``LAKEHOUSE_<SECTION>_<KEY>`` environment variables, then CLI flags.

Three modules, each with one job:

- ``values``: the value types (``Duration``, ``Secret``) and the parsers and checks that read them from text;
- ``schema``: every setting, declared once as a field of a frozen dataclass per section (type, default,
  allowed values, meaning), and ``Config``, the typed result;
- ``loader``: ``load_config``, the chain of layers (file, environment, flags), validation and cross-checks.

``docs`` writes docs/CONFIGURATION.md from the schema (``make docs``). Import from here: the names below
are the package's public face.
"""

from lakehouse.platform.config.loader import (
                                              CONFIG_ENV,
                                              DEFAULT_CONFIG_PATH,
                                              PROJECT_DIR,
                                              load_config,
                                              local_zone_name,
                                              read_config_text,
)
from lakehouse.platform.config.schema import (
                                              ENV_PREFIX,
                                              SCHEMA,
                                              SECTIONS,
                                              AnalyticsSection,
                                              ClusterSection,
                                              Config,
                                              DashboardSection,
                                              KafkaSection,
                                              MonitoringSection,
                                              Option,
                                              PathsSection,
                                              ProducerSection,
                                              QuerySection,
                                              S3Section,
                                              Section,
                                              SparkSection,
                                              StreamingSection,
                                              describe_settings,
                                              env_var_name,
)
from lakehouse.platform.config.values import ConfigError, Duration, Secret, parse_duration, redact, remember_secret

__all__ = [
    "CONFIG_ENV", "DEFAULT_CONFIG_PATH", "ENV_PREFIX", "PROJECT_DIR", "SCHEMA", "SECTIONS",
    "AnalyticsSection", "ClusterSection", "Config", "ConfigError", "DashboardSection", "Duration", "KafkaSection",
    "MonitoringSection", "Option", "PathsSection", "ProducerSection", "QuerySection", "S3Section", "Secret",
    "Section", "SparkSection", "StreamingSection",
    "describe_settings", "env_var_name", "load_config", "local_zone_name", "parse_duration", "read_config_text",
    "redact", "remember_secret",
]
