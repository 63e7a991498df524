"""Domain core: make the privacy notice's vendor promises true. Runs without Airflow."""
