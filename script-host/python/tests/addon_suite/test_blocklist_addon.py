import asyncio

import pytest

from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils

from blocklist_addon import Blocklist


def test_blocked_host_gets_the_configured_status():
    addon = Blocklist()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, blocklist=["evil.example"], blocklist_status=451)
        f = tflow.tflow(req=tutils.treq(host="evil.example"))
        addon.request(f)
        assert f.response.status_code == 451
        assert f.response.content == b"blocked"


def test_other_hosts_pass():
    addon = Blocklist()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, blocklist=["evil.example"])
        f = tflow.tflow()
        addon.request(f)
        assert f.response is None


def test_bad_status_is_refused_and_rolled_back():
    addon = Blocklist()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(addon, blocklist_status=200)
        assert tctx.options.blocklist_status == 403


def test_count_command_and_a_full_cycle():
    addon = Blocklist()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, blocklist=["address"])
        f = tflow.tflow()
        asyncio.run(tctx.cycle(addon, f))
        assert f.response.status_code == 403
        assert tctx.master.commands.execute("blocklist.count") == 1


def test_the_script_file_loads():
    with taddons.context() as tctx:
        script = tctx.script(__file__.replace("test_blocklist_addon.py", "blocklist_addon.py"))
        # A script is loaded as its own module, as mitmproxy loads it.
        assert type(script.addons[0]).__name__ == "Blocklist"
        assert script.addons[0].count() == 0
