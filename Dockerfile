# Astro Runtime for Airflow 3.3 (Python 3.11/3.12). Requirements are pinned; constraints.txt is the full lock.
FROM astrocrpublic.azurecr.io/runtime:3.3-2
COPY constraints.txt /tmp/constraints.txt
ENV PIP_CONSTRAINT=/tmp/constraints.txt \
    PYTHONPATH=/usr/local/airflow/include \
    GX_ANALYTICS_ENABLED=False
