from __future__ import annotations

from runyard.auth.devices import Device, describe

CASES = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": ("desktop", "Chrome 131.0.0", "Windows 10"),
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36": ("mobile", "Chrome Mobile 131.0.0", "Android 14"),
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1": ("tablet", "Mobile Safari 16.6", "iOS 16.6"),
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": (
        "bot",
        "Googlebot 2.1",
        None,
    ),
    "python-requests/2.32.3": ("other", "Python Requests 2.32", None),
}


def test_user_agents_are_described_by_device_type_browser_and_os() -> None:
    for user_agent, expected in CASES.items():
        device = describe(user_agent)
        assert (device.device_type, device.browser, device.os) == expected, user_agent


def test_a_missing_user_agent_is_an_unknown_device() -> None:
    assert describe(None) == Device(device_type="other", browser=None, os=None)
    assert describe("") == Device(device_type="other", browser=None, os=None)
