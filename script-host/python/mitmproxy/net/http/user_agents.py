"""`mitmproxy.net.http.user_agents`: a few User-Agent strings by name and one-letter shortcut."""

UASTRINGS = [
    ("android", "a", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"),
    ("blackberry", "l", "Mozilla/5.0 (BlackBerry; U; BlackBerry 9900; en) AppleWebKit/534.11+ "
                        "(KHTML, like Gecko) Version/7.1.0.346 Mobile Safari/534.11+"),
    ("bingbot", "b", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    ("chrome", "c", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("firefox", "f", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 "
                     "Firefox/133.0"),
    ("googlebot", "g", "Googlebot/2.1 (+http://www.google.com/bot.html)"),
    ("ie9", "i", "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)"),
    ("ipad", "p", "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
                  "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"),
    ("iphone", "h", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) "
                    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 "
                    "Safari/604.1"),
    ("safari", "s", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 "
                    "(KHTML, like Gecko) Version/17.6 Safari/605.1.15"),
]


def get_by_shortcut(s):
    """The (name, shortcut, string) entry for shortcut `s`, or None."""
    return next((entry for entry in UASTRINGS if entry[1] == s), None)
