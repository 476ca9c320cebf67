"""asyncfetch: fetch many URLs concurrently from asyncio, fairly and safely.

Example:
    ```python
    import asyncfetch

    results = await asyncfetch.fetch_all(urls, concurrency=100, per_host=8)
    ```
"""

from ._api import fetch_all as fetch_all
from ._config import Retry as Retry
from ._config import Timeout as Timeout
from ._errors import BodyTooLarge as BodyTooLarge
from ._errors import ConnectError as ConnectError
from ._errors import Disallowed as Disallowed
from ._errors import FetchError as FetchError
from ._errors import FetchTimeout as FetchTimeout
from ._errors import HostDown as HostDown
from ._errors import HTTPStatusError as HTTPStatusError
from ._errors import InvalidURL as InvalidURL
from ._errors import ParseError as ParseError
from ._errors import ProtocolError as ProtocolError
from ._errors import SaveError as SaveError
from ._errors import TLSError as TLSError
from ._errors import TooManyRedirects as TooManyRedirects
from ._fetcher import Fetcher as Fetcher
from ._links import links as links
from ._models import Request as Request
from ._models import Result as Result
from ._models import Stats as Stats
from ._sync import SyncFetcher as SyncFetcher
from ._sync import run as run
from ._version import __version__ as __version__

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "Disallowed",
    "FetchError",
    "FetchTimeout",
    "Fetcher",
    "HTTPStatusError",
    "HostDown",
    "InvalidURL",
    "ParseError",
    "ProtocolError",
    "Request",
    "Result",
    "Retry",
    "SaveError",
    "Stats",
    "SyncFetcher",
    "TLSError",
    "Timeout",
    "TooManyRedirects",
    "__version__",
    "fetch_all",
    "links",
    "run",
]

for _name in (
    "fetch_all",
    "links",
    "run",
    "Fetcher",
    "SyncFetcher",
    "Request",
    "Result",
    "Stats",
    "Retry",
    "Timeout",
):
    globals()[_name].__module__ = "asyncfetch"
del _name
