"""The exceptions scripts raise or catch, named as in mitmproxy."""


class MitmproxyException(Exception):
    """Base class of all mitmproxy exceptions."""


class FlowReadException(MitmproxyException):
    pass


class ControlException(MitmproxyException):
    """An operation on a flow that its state does not allow (kill a dead flow, ...)."""


class CommandError(MitmproxyException):
    pass


class OptionsError(MitmproxyException):
    """Raised by `configure` to reject an option change."""


class AddonManagerError(MitmproxyException):
    pass


class AddonHalt(MitmproxyException):
    """Raised by a hook to stop the event from reaching later addons."""


class TypeError(MitmproxyException):  # noqa: A001 - mitmproxy's own name
    pass


class NetlibException(MitmproxyException):
    pass


class HttpException(NetlibException):
    pass


class TcpException(NetlibException):
    pass


class TlsException(NetlibException):
    pass
