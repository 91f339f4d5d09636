pytest_plugins = [
    "tests.fixtures.tansu",
    "tests.fixtures.postgres",
    "tests.fixtures.system",
    "tests.fixtures.distributed",
    "tests.fixtures.no_skips_in_ci",
    "tests.fixtures.proxy",
]
