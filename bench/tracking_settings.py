"""Settings of bench/tracking_rps.py's server only: the product's settings, with the bench URLconf
(the product's URLs plus a baseline view). Not for anything else."""

from emailseq.settings import *  # noqa: F403

ROOT_URLCONF = "bench.tracking_urls"
