"""Every Store in conftest.STORES keeps the Store contract (lts.testing.store)."""

from lts.testing.store import StoreContract


class TestStores(StoreContract):
    pass
