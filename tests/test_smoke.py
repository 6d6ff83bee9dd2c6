from tornado.testing import gen_test

from tests.apptest import HookTestCase
from tests.helpers import push_payload


class SmokeTest(HookTestCase):
    @gen_test(timeout=60)
    async def test_push_deploys(self):
        sha = self.repos.commit_submodule("New post\n")
        status, body = await self.deliver(push_payload(sha))
        assert status == 200, body
        assert body["head"] == sha
        assert (self.repos.deployed / "posts" / "index.rst").read_text() == "New post\n"
