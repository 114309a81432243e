"""The error messages ``mkdoctor explain "ERROR TEXT"`` recognises: one table, one place.

Each :class:`Message` is one message as a program prints it, with the variants other
versions print, the place it comes from (``source``), sample texts as users paste them,
and the likely causes, most likely first, each naming the checks that diagnose it.

Sources:
- OpenSSH: the source file and function that print the text (openssh-portable); the
  variants of older releases are named with the release that changed them.
- WSTP / MathLink error codes: the C API's error tables,
  reference.wolfram.com/language/ref/c/WSError.html and .../ref/c/MLError.html (MLError
  "has been replaced by WSError": the ML and WS names are the same codes).
- Wolfram Language messages (``LinkObject::linkd`` ...): their reference pages,
  reference.wolfram.com/language/ref/message/SYMBOL/TAG.html.
- "observed": the wording as users quote it (front-end dialogs, licence messages, shell
  errors); no reference page lists it, so the pattern is kept loose.

A pattern is a regular expression searched (case-insensitive) in the text after it was
normalised by :func:`mkdoctor.explain.normalise` (whitespace runs and line breaks made one
space, typographic quotes made plain). A named group ``host`` captures the remote host
when the message names it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The link of the chain each message belongs to, for the grouping of the answer.
ORIGINS = ("ssh", "sshd", "shell", "kernel", "licence", "front end", "WSTP")


@dataclass(frozen=True)
class Cause:
    text: str  # the likely cause, one sentence
    checks: tuple[str, ...]  # the checks that diagnose it
    action: str = ""  # what to do when it is this cause (optional; the checks say more)


@dataclass(frozen=True)
class Message:
    key: str
    origin: str
    meaning: str  # what the message says, in words
    patterns: tuple[str, ...]
    samples: tuple[str, ...]
    causes: tuple[Cause, ...]
    source: str


OSSH = "OpenSSH "
# Only from the start of a word (the look-behind): a host pattern tried at every
# position of a long token would take quadratic time on a pasted log.
HOST = r"(?<![\w.:%\[\]@+-])(?P<host>(?:[\w.+-]{1,64}@)?[\w.:%\[\]-]{1,255})"

MESSAGES: tuple[Message, ...] = (
    # ------------------------------------------------------------------ ssh: network
    Message(
        "resolve", "ssh", "ssh could not turn the host name into an address.",
        (r"Could not resolve hostname " + HOST + r"?:? ?(?:Name or service not known|"
         r"nodename nor servname provided|Temporary failure in name resolution|"
         r"No address associated with hostname|No such host is known)?",
         r"Could not resolve host",),
        ("ssh: Could not resolve hostname workstation.lab: Name or service not known",
         "ssh: Could not resolve hostname gpu1: nodename nor servname provided, or not known",
         "ssh: Could not resolve hostname lab: Temporary failure in name resolution"),
        (Cause("the name is misspelt, or is a Host alias of an ssh config that this command "
               "does not read (give -F FILE / --ssh-config)", ("MK301",)),
         Cause("the name exists only inside a VPN or a lab network you are not on right now",
               ("MK101", "MK301")),
         Cause("behind a jump host the name resolves there, not here: set ProxyJump",
               ("MK301",))),
        OSSH + "ssh.c resolve_host() (\"%s: Could not resolve hostname %s: %s\"); the text "
        "after the colon is the resolver's (glibc: \"Name or service not known\", macOS: "
        "\"nodename nor servname provided, or not known\")"),
    Message(
        "refused", "ssh", "the host answered, but nothing listens on the SSH port.",
        (r"connect to host " + HOST + r" port \d+: Connection refused",
         r"Connection refused"),
        ("ssh: connect to host workstation.lab port 22: Connection refused",
         "Connection refused"),
        (Cause("sshd is not running on the host, or listens on another port (Port in "
               "sshd_config; give --host USER@HOST:PORT)", ("MK302",)),
         Cause("a firewall on the host or on the way rejects the connection (REJECT sends "
               "this; DROP makes it time out)", ("MK302",)),
         Cause("the name points to another machine than you think (an old DNS entry, a NAT "
               "router that forwards nothing)", ("MK301", "MK302"))),
        OSSH + "sshconnect.c ssh_connect_direct() (\"ssh: connect to host %s port %s: %s\", "
        "strerror(ECONNREFUSED))"),
    Message(
        "timeout", "ssh", "nothing answered the connection attempt before the time ran out.",
        (r"connect to host " + HOST + r" port \d+: (?:Connection|Operation) timed out",
         r"(?:Connection|Operation) timed out"),
        ("ssh: connect to host 192.0.2.10 port 22: Connection timed out",
         "ssh: connect to host lab.example.org port 22: Operation timed out"),
        (Cause("a firewall drops the packets (on the host, the campus border, or a cloud "
               "security group)", ("MK302",)),
         Cause("the host is off, asleep, or not at that address any more", ("MK301", "MK302")),
         Cause("the host is only reachable inside a VPN or through a jump host (ProxyJump)",
               ("MK101", "MK302"))),
        OSSH + "sshconnect.c ssh_connect_direct() (strerror(ETIMEDOUT): \"Connection timed "
        "out\" on Linux, \"Operation timed out\" on macOS and BSD)"),
    Message(
        "no-route", "ssh", "this computer has no way to reach that address.",
        (r"connect to host " + HOST + r" port \d+: (?:No route to host|Network is unreachable)",
         r"No route to host|Network is unreachable"),
        ("ssh: connect to host 10.0.0.5 port 22: No route to host",
         "ssh: connect to host 2001:db8::5 port 22: Network is unreachable"),
        (Cause("the address is in a private network (a lab, a VPN) this laptop is not on",
               ("MK101", "MK302")),
         Cause("the host is down (no ARP answer on the same LAN gives this too)", ("MK302",)),
         Cause("an IPv6 address without IPv6 on this network (try the IPv4 address, ssh -4)",
               ("MK101", "MK301"))),
        OSSH + "sshconnect.c ssh_connect_direct() (strerror(EHOSTUNREACH / ENETUNREACH))"),
    Message(
        "banner-closed", "ssh",
        "the TCP connection opened, but the server closed or reset it before saying "
        "\"SSH-2.0\".",
        (r"(?:kex|ssh)_exchange_identification: (?:read: )?(?:Connection closed by remote host|"
         r"Connection reset by peer)",
         r"(?:kex|ssh)_exchange_identification",
         r"Connection closed by remote host|Connection reset by peer"),
        ("kex_exchange_identification: read: Connection reset by peer",
         "kex_exchange_identification: Connection closed by remote host",
         "ssh_exchange_identification: Connection closed by remote host",
         "ssh_exchange_identification: read: Connection reset by peer"),
        (Cause("sshd refuses your address before the handshake: fail2ban / sshguard / "
               "DenyHosts banned it after failed logins, or TCP wrappers (hosts.deny)",
               ("MK302",), "wait for the ban to expire, or ask the admin to unban your address"),
         Cause("too many unauthenticated connections at once (sshd's MaxStartups), e.g. many "
               "parallel ssh or a scan", ("MK302",)),
         Cause("something other than sshd holds the port (a proxy, a port forward whose other "
               "end is gone)", ("MK302",)),
         Cause("sshd fails as it starts the session (unreadable host keys, a full disk)",
               ("MK302",))),
        OSSH + "kex.c kex_exchange_identification() (since OpenSSH 8.0; older releases printed "
        "it from sshconnect.c ssh_exchange_identification())"),
    Message(
        "banner-timeout", "ssh", "the server accepted the connection but never sent its banner.",
        (r"Connection timed out during banner exchange",
         r"banner exchange: Connection to " + HOST + r" port \d+: (?:Connection timed out|"
         r"invalid format)"),
        ("Connection timed out during banner exchange",
         "banner exchange: Connection to 192.0.2.7 port 443: invalid format"),
        (Cause("the port is not an SSH server (a web server, a VPN endpoint): \"invalid "
               "format\" means something else answered", ("MK302",)),
         Cause("sshd is overloaded or its reverse DNS lookup of your address hangs "
               "(UseDNS yes with a broken resolver)", ("MK302",)),
         Cause("a middlebox passes the connection but not the data (a captive portal, a proxy)",
               ("MK302",))),
        OSSH + "kex.c kex_exchange_identification() (\"Connection timed out during banner "
        "exchange\"); sshconnect.c ssh_login() (sshpkt_fatal \"banner exchange\")"),
    Message(
        "reset", "ssh", "the established SSH connection was cut by the other side or the network.",
        (r"Connection reset by " + HOST + r" port \d+",
         r"Connection closed by " + HOST + r" port \d+",
         r"Connection to " + HOST + r" port \d+ timed out"),
        ("Connection reset by 192.0.2.10 port 22",
         "Connection closed by 203.0.113.4 port 22",
         "Connection to lab.example.org port 22 timed out"),
        (Cause("sshd ended the session after the login: the account's shell is nologin, a "
               "ForceCommand or a key's command= runs instead, or AllowUsers/DenyUsers "
               "refused you", ("MK304", "MK305")),
         Cause("fail2ban or a firewall cut the connection", ("MK302",)),
         Cause("a NAT router dropped an idle connection (set ServerAliveInterval 30)",
               ("MK103", "MK302"))),
        OSSH + "packet.c sshpkt_vfatal() (\"Connection reset by %s\", \"Connection closed by "
        "%s\", \"Connection to %s timed out\"; %s is \"HOST port N\")"),
    Message(
        "server-alive", "ssh", "the session was up, then the server stopped answering.",
        (r"Timeout, server " + HOST + r" not responding",
         r"client_loop: send disconnect: Broken pipe",
         r"Connection to " + HOST + r" closed by remote host"),
        ("Timeout, server lab.example.org not responding.",
         "client_loop: send disconnect: Broken pipe",
         "Connection to workstation closed by remote host."),
        (Cause("the laptop slept or changed networks (Wi-Fi to wired, VPN reconnect): every "
               "link through the session dies with it", ("MK101",),
               "reconnect; the front end needs a new kernel"),
         Cause("a NAT router or firewall forgot the idle connection (ServerAliveInterval 30 "
               "keeps it alive)", ("MK103",)),
         Cause("the server rebooted, or an administrator or the OOM killer ended sshd",
               ("MK302",))),
        OSSH + "clientloop.c server_alive_check() (\"Timeout, server %s not responding.\"), "
        "client_loop() (fatal \"send disconnect\" with EPIPE), client_process_net_input() "
        "(\"Connection to %s closed by remote host.\")"),
    # ------------------------------------------------------------------ ssh: host keys
    Message(
        "host-key-changed", "ssh",
        "the server's host key differs from the one in known_hosts: ssh stops.",
        (r"REMOTE HOST IDENTIFICATION HAS CHANGED",
         r"Host key for " + HOST + r" has changed and you have requested strict checking",
         r"Offending \w+ key in \S+:\d+",
         r"POSSIBLE DNS SPOOFING DETECTED",
         r"Port forwarding is disabled to avoid man-in-the-middle attacks"),
        ("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
         "Host key for lab.example.org has changed and you have requested strict checking.",
         "Offending ECDSA key in /home/alice/.ssh/known_hosts:12",
         "Port forwarding is disabled to avoid man-in-the-middle attacks."),
        (Cause("the server was reinstalled or its host keys regenerated: confirm the new "
               "fingerprint with its administrator, then ssh-keygen -R HOST", ("MK303",)),
         Cause("the name or address now points to another machine (a reused IP, a DHCP lease, "
               "a different node behind a load balancer)", ("MK301", "MK303")),
         Cause("someone intercepts the connection: do not accept the key until the "
               "fingerprint is confirmed", ("MK303",))),
        OSSH + "sshconnect.c warn_changed_key() and check_host_key() (\"Host key for %s has "
        "changed...\", \"Offending %s key in %s:%lu\", \"Port forwarding is disabled to "
        "avoid man-in-the-middle attacks.\")"),
    Message(
        "host-key-unknown", "ssh", "ssh has no host key for this server and may not ask.",
        (r"Host key verification failed",
         r"No \w+ host key is known for " + HOST + r" and you have requested strict checking"),
        ("Host key verification failed.",
         "No ED25519 host key is known for lab.example.org and you have requested strict "
         "checking."),
        (Cause("the host is not in known_hosts and ssh runs without a terminal (BatchMode, "
               "the front end's launch): log in once by hand and confirm the fingerprint",
               ("MK303",)),
         Cause("known_hosts has the host under another name (an alias, an IP, a port other "
               "than 22 is stored as [host]:port)", ("MK303", "MK501")),
         Cause("the host key changed (see \"REMOTE HOST IDENTIFICATION HAS CHANGED\")",
               ("MK303",))),
        OSSH + "sshconnect2.c verify_host_key_callback() (\"Host key verification failed.\"); "
        "sshconnect.c check_host_key() (\"No %s host key is known for %s and you have "
        "requested strict checking.\")"),
    Message(
        "negotiate", "ssh", "client and server share no algorithm of one kind.",
        (r"Unable to negotiate with " + HOST + r"(?: port \d+)?: no matching "
         r"(?:host key type|key exchange method|cipher|MAC) found",
         r"no matching (?:host key type|key exchange method|cipher|MAC|compression method) found",
         r"Unable to negotiate with"),
        ("Unable to negotiate with 192.0.2.3 port 22: no matching host key type found. "
         "Their offer: ssh-rsa,ssh-dss",
         "Unable to negotiate with old.lab port 22: no matching key exchange method found. "
         "Their offer: diffie-hellman-group1-sha1",
         "no matching cipher found"),
        (Cause("the server runs a very old sshd that offers only algorithms current OpenSSH "
               "disabled (ssh-rsa with SHA-1 since 8.8, DSA, group1): update the server's "
               "OpenSSH", ("MK201", "MK302")),
         Cause("a crypto policy on either side (Fedora/RHEL update-crypto-policies) or a "
               "Ciphers/KexAlgorithms/HostKeyAlgorithms line narrows the lists",
               ("MK201",))),
        OSSH + "packet.c sshpkt_vfatal() (\"Unable to negotiate with %s: %s. Their offer: "
        "%s\"), the reason from ssherr.c ssh_err() (\"no matching host key type found\", ...)"),
    # ------------------------------------------------------------------ ssh: login
    Message(
        "denied-publickey", "ssh", "the server accepted none of the ways ssh tried to log in.",
        (r"(?:" + HOST + r": )?Permission denied \((?:publickey|password|keyboard-interactive|"
         r"gssapi-keyex|gssapi-with-mic|hostbased)(?:,[\w-]+)*\)",),
        ("alice@lab.example.org: Permission denied (publickey).",
         "Permission denied (publickey,password).",
         "bob@10.0.0.5: Permission denied (publickey,gssapi-keyex,gssapi-with-mic).",
         "Permission denied (publickey,keyboard-interactive)."),
        (Cause("your public key is not in the server's authorized_keys (or is for another "
               "user: check USER@)", ("MK304", "MK305"),
               "ssh-copy-id -i ~/.ssh/id_ed25519.pub USER@HOST"),
         Cause("sshd ignores authorized_keys because of its modes (StrictModes: home or .ssh "
               "writable by others; the server log says \"Authentication refused: bad "
               "ownership or modes\")", ("MK305",)),
         Cause("ssh offers another key than the one installed, or none (no agent, a "
               "passphrase key not loaded, the key file unreadable)", ("MK202", "MK304")),
         Cause("the key type is refused (DSA; RSA shorter than 2048 bits; ssh-rsa SHA-1 "
               "signatures on new servers)", ("MK202",))),
        OSSH + "sshconnect2.c userauth() (\"%s@%s: Permission denied (%s).\", the list of "
        "methods the server still allows)"),
    Message(
        "denied-password", "ssh", "a password was tried and refused.",
        (r"Permission denied, please try again",),
        ("Permission denied, please try again.",),
        (Cause("the password is wrong, or the account is locked (the remote kernel needs a "
               "key login anyway: the front end cannot type a password)", ("MK304",),
               "mkdoctor setup installs a key"),
         Cause("the key login failed first and ssh fell back to a password", ("MK202", "MK305"))),
        OSSH + "sshconnect2.c userauth_passwd() (\"Permission denied, please try again.\")"),
    Message(
        "too-many-auth", "ssh", "the server cut the login after too many failed attempts.",
        (r"Received disconnect from " + HOST + r" port \d+:\d+: Too many authentication failures",
         r"Too many authentication failures"),
        ("Received disconnect from 192.0.2.10 port 22:2: Too many authentication failures",
         "Disconnected from 192.0.2.10 port 22\nToo many authentication failures",
         "Too many authentication failures for alice"),
        (Cause("the ssh agent offers many keys and the server allows MaxAuthTries (default 6) "
               "before the right one: use IdentitiesOnly yes and IdentityFile in the Host "
               "block", ("MK202", "MK304")),
         Cause("none of the keys is authorized (each one counts as a failure)",
               ("MK304", "MK305"))),
        OSSH + "auth.c auth_maxtries_exceeded() (sshd: \"Too many authentication failures\"); "
        "the client prints it through packet.c ssh_packet_read_poll_seqnr() (\"Received "
        "disconnect from %s port %d:%u: %.400s\")"),
    Message(
        "not-allowed", "sshd", "sshd's own policy refused this user (seen in the server's log).",
        (r"User \S+ from \S+ not allowed because (?:not listed in AllowUsers|listed in "
         r"DenyUsers|none of user's groups are listed in AllowGroups|a group is listed in "
         r"DenyGroups)",
         r"ROOT LOGIN REFUSED FROM",
         r"not allowed because (?:account is locked|shell \S+ (?:does not exist|is not "
         r"executable))"),
        ("User alice from 192.0.2.8 not allowed because not listed in AllowUsers",
         "ROOT LOGIN REFUSED FROM 192.0.2.8 port 51234",
         "User bob not allowed because account is locked"),
        (Cause("the server's AllowUsers/AllowGroups/DenyUsers lines exclude you: ask its "
               "administrator", ("MK304",)),
         Cause("you log in as root and PermitRootLogin forbids it: use your own account",
               ("MK310", "MK304")),
         Cause("the account is locked or its shell is missing", ("MK304", "MK306"))),
        OSSH + "auth.c allowed_user() (\"User %s from %s not allowed because ...\") and "
        "auth_root_allowed() (\"ROOT LOGIN REFUSED FROM %s port %d\")"),
    Message(
        "strictmodes", "sshd",
        "sshd ignored authorized_keys because the file or a directory above it is writable "
        "by others (server log).",
        (r"Authentication refused: bad ownership or modes for (?:directory|file) \S+",
         r"bad ownership or modes for (?:directory|file)",
         r"Authentication refused for \S+: bad owner or modes for"),
        ("Authentication refused: bad ownership or modes for directory /home/alice",
         "sshd[812]: Authentication refused: bad ownership or modes for file "
         "/home/alice/.ssh/authorized_keys"),
        (Cause("home, ~/.ssh or authorized_keys is group- or world-writable (StrictModes "
               "yes): chmod go-w ~ && chmod 700 ~/.ssh && chmod 600 ~/.ssh/authorized_keys",
               ("MK305",)),
         Cause("the files belong to another user (copied as root)", ("MK305",),
               "chown -R USER: ~/.ssh")),
        OSSH + "auth2-pubkeyfile.c auth_openfile() (\"Authentication refused: %s\"), the reason "
        "from misc.c safe_path() (\"bad ownership or modes for file|directory %s\")"),
    # ------------------------------------------------------------------ ssh: local files
    Message(
        "key-perms", "ssh", "ssh refuses to use a private key that others can read.",
        (r"UNPROTECTED PRIVATE KEY FILE",
         r"Permissions 0?\d{3,4} for '?[^']+'? are too open",
         r"This private key will be ignored"),
        ("@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @",
         "Permissions 0644 for '/home/alice/.ssh/id_ed25519' are too open.",
         "This private key will be ignored."),
        (Cause("the private key's mode lets the group or others read it: chmod 600 KEYFILE "
               "(on Windows: remove other users from the file's security tab)", ("MK202",)),),
        OSSH + "authfile.c sshkey_perm_ok() (\"Permissions 0%3.3o for '%s' are too open.\", "
        "\"This private key will be ignored.\")"),
    Message(
        "key-load", "ssh", "ssh could not read a private key file.",
        (r"Load key \"?[^\"]*\"?: (?:invalid format|bad permissions|incorrect passphrase "
         r"supplied to decrypt private key|error in libcrypto|No such file or directory)",
         r"Warning: Identity file \S+ not accessible",
         r"no such identity: \S+"),
        ("Load key \"/home/alice/.ssh/id_rsa\": invalid format",
         "Load key \"C:\\\\Users\\\\Alice\\\\.ssh\\\\id_ed25519\": error in libcrypto",
         "Warning: Identity file /home/alice/.ssh/lab not accessible: No such file or directory.",
         "no such identity: /home/alice/.ssh/id_ecdsa: No such file or directory"),
        (Cause("the file is not a private key (the .pub half, a PuTTY .ppk, a file with "
               "Windows line endings or a missing final newline)", ("MK202",),
               "convert a .ppk with puttygen; check with ssh-keygen -y -f KEYFILE"),
         Cause("the IdentityFile path is wrong (a path with spaces must be quoted in the ssh "
               "config)", ("MK202", "MK501")),
         Cause("a key in a format this OpenSSH is too old to read", ("MK201", "MK202"))),
        OSSH + "sshconnect2.c load_identity_file() (\"Load key \\\"%s\\\": %s\"), ssh.c "
        "main() (\"Warning: Identity file %s not accessible: %s.\"), sshconnect2.c "
        "(\"no such identity: %s: %s\")"),
    Message(
        "config-perms", "ssh", "ssh refuses a client config that others may write.",
        (r"Bad owner or permissions on \S+",),
        ("Bad owner or permissions on /home/alice/.ssh/config",
         "Bad owner or permissions on C:\\\\Users\\\\alice/.ssh/config"),
        (Cause("~/.ssh/config (or a file it Includes) is writable by the group or others, or "
               "belongs to another user: chmod 600 ~/.ssh/config", ("MK501",)),),
        OSSH + "readconf.c read_config_file_depth() (\"Bad owner or permissions on %s\")"),
    Message(
        "config-option", "ssh", "ssh does not know an option of its config file or command line.",
        (r"line \d+: Bad configuration option: \S+",
         r"Bad configuration option",
         r"line \d+: Unsupported option \S+"),
        ("/home/alice/.ssh/config: line 14: Bad configuration option: controlpersist",
         "/home/alice/.ssh/config line 3: Unsupported option \"rsaauthentication\""),
        (Cause("this ssh is older than the option (or is not OpenSSH): update it, or remove "
               "the option", ("MK201", "MK501")),
         Cause("a typo in the ssh config at that line", ("MK501",))),
        OSSH + "readconf.c parse_token() (\"%s: line %d: Bad configuration option: %s\")"),
    # ------------------------------------------------------------------ ssh: forwards
    Message(
        "rfwd-failed", "ssh",
        "the server did not open a reverse forward (-R): the kernel cannot reach the laptop "
        "through it.",
        (r"(?:Warning|Error): remote port forwarding failed for listen port (?P<port>\d+)",
         r"remote port forwarding failed for listen (?:port|path)"),
        ("Warning: remote port forwarding failed for listen port 31415",
         "Error: remote port forwarding failed for listen port 31416",
         "remote port forwarding failed for listen port 31415"),
        (Cause("the port is already taken on the server: a stale ssh session or an old kernel "
               "holds it (sshd then cannot listen there)", ("MK403",),
               "end the stale session on the server, or choose other --link-ports"),
         Cause("sshd forbids the forward (AllowTcpForwarding no / local, DisableForwarding, "
               "PermitListen)", ("MK312", "MK403")),
         Cause("the key's authorized_keys line has restrict or no-port-forwarding",
               ("MK305", "MK403"))),
        OSSH + "ssh.c ssh_confirm_remote_forward() (\"Warning: remote port forwarding failed "
        "for listen port %d\"; \"Error: ...\" with ExitOnForwardFailure yes); mux.c "
        "mux_confirm_remote_forward() for ssh -O forward"),
    Message(
        "listen-failed", "ssh", "a forward could not listen: the port is already in use.",
        (r"channel_setup_fwd_listener_tcpip: cannot listen to port: (?P<port>\d+)",
         r"bind \[?[\w.:]*\]?:(?P<port2>\d+): Address already in use",
         r"Could not request local forwarding",
         r"cannot listen to port"),
        ("channel_setup_fwd_listener_tcpip: cannot listen to port: 31415",
         "bind [127.0.0.1]:31415: Address already in use",
         "Could not request local forwarding."),
        (Cause("another program holds the port: a stale tunnel, an earlier kernel session, or "
               "a second front end (printed by the side that listens: the server for -R, this "
               "laptop for -L)", ("MK203", "MK403"),
               "end it (the check names the process), or choose other --link-ports"),
         Cause("ports below 1024 need root; a port excluded by the system (Windows reserves "
               "ranges: netsh int ipv4 show excludedportrange protocol=tcp)", ("MK203",))),
        OSSH + "channels.c channel_setup_fwd_listener_tcpip() (\"bind [%s]:%s: %s\", "
        "\"cannot listen to port: %d\"); ssh.c ssh_init_forwarding() (\"Could not request "
        "local forwarding.\")"),
    Message(
        "connect-to-failed", "ssh",
        "a forward arrived, but nothing listened at its destination (for the link: the "
        "front end was not listening on that port of the laptop).",
        (r"connect_to " + HOST + r" port (?P<port>\d+): failed",
         r"open failed: connect failed: (?:Connection refused|No route to host|"
         r"Connection timed out|Name or service not known)"),
        ("connect_to 127.0.0.1 port 31415: failed.",
         "channel 2: open failed: connect failed: Connection refused",
         "connect_to localhost port 31416: failed."),
        (Cause("the front end is not (or no longer) listening on the forwarded port: the "
               "ports of the kernel configuration and of ssh -R differ, or the front end "
               "gave up waiting", ("MK501", "MK404")),
         Cause("localhost resolved to ::1 while the listener is on 127.0.0.1: write "
               "127.0.0.1, not localhost", ("MK501",)),
         Cause("a stale tunnel forwards to a port nothing listens on any more",
               ("MK203", "MK403"))),
        OSSH + "channels.c channel_post_connecting() (\"connect_to %.100s port %d: "
        "failed.\"); channel_input_open_failure() (\"channel %d: open failed: %s%s%s\", "
        "the reason \"connect failed\" from reason2txt())"),
    Message(
        "admin-prohibited", "ssh", "the server forbids this kind of forward or channel.",
        (r"open failed: administratively prohibited",
         r"administratively prohibited",
         r"stdio forwarding failed"),
        ("channel 0: open failed: administratively prohibited: open failed",
         "stdio forwarding failed"),
        (Cause("the jump host (ProxyJump) or server has AllowTcpForwarding no / "
               "DisableForwarding, or PermitOpen does not list the target", ("MK312",)),
         Cause("a restrict / no-port-forwarding option on the key's authorized_keys line",
               ("MK305",)),
         Cause("through a jump host: the jump host cannot reach the target (a wrong name "
               "there)", ("MK301", "MK302"))),
        OSSH + "channels.c reason2txt() (\"administratively prohibited\" for "
        "SSH2_OPEN_ADMINISTRATIVELY_PROHIBITED), printed by channel_input_open_failure(); "
        "ssh.c ssh_stdio_confirm() (\"stdio forwarding failed\")"),
    Message(
        "mux", "ssh", "the ssh connection sharing (ControlMaster) socket is stale or unusable.",
        (r"Control socket connect\([^)]*\): (?:No such file or directory|Connection refused)",
         r"ControlSocket \S+ already exists, disabling multiplexing",
         r"ControlPath too long|unix_listener: path \"[^\"]*\" too long"),
        ("Control socket connect(/home/alice/.ssh/cm-lab): Connection refused",
         "ControlSocket /tmp/mk-lab.sock already exists, disabling multiplexing",
         "unix_listener: path \"/Users/alice/Library/Application Support/x/cm-ab\" too long "
         "for Unix domain socket"),
        (Cause("a master connection died and left its socket: remove the file (or ssh -O exit "
               "HOST)", ("MK304",)),
         Cause("the ControlPath is too long for a Unix socket (about 104 bytes): use a short "
               "path such as ~/.ssh/cm-%C", ("MK501",))),
        OSSH + "mux.c muxclient() (\"Control socket connect(%.100s): %s\"), muxserver_listen() "
        "(\"ControlSocket %s already exists, disabling multiplexing\"); misc.c unix_listener()"),
    # ------------------------------------------------------------------ remote shell
    Message(
        "not-found", "shell", "the remote shell did not find the kernel program.",
        (r"sh: \d+: (?P<prog>[\w./-]+): not found",
         r"(?:bash|sh|ksh): (?:line \d+: )?(?P<prog2>[\w./-]+): (?:command )?not found",
         r"zsh:\d*:? command not found: \S+",
         r"(?:WolframKernel|MathKernel|math|wolfram)\S*: No such file or directory",
         r"is not recognized as (?:an internal or external command|the name of a cmdlet)",
         r"command not found"),
        ("sh: 1: math: not found",
         "bash: WolframKernel: command not found",
         "zsh:1: command not found: wolfram",
         "bash: /usr/local/Wolfram/Mathematica/14.0/Executables/WolframKernel: No such file "
         "or directory",
         "'math' is not recognized as an internal or external command,"),
        (Cause("the kernel is not on the PATH of a non-interactive shell (ssh HOST cmd reads "
               "neither .bash_profile nor .profile): give the full path of WolframKernel",
               ("MK401",), "mkdoctor setup finds it; or --kernel /full/path/WolframKernel"),
         Cause("the path is wrong or the version changed (…/Mathematica/13.3 after an update to "
               "14.0)", ("MK401", "MK501")),
         Cause("the server is Windows: its ssh shell is cmd.exe or PowerShell", ("MK401",
                                                                                 "MK306"))),
        "observed: the shells' wordings (dash \"sh: 1: X: not found\", bash \"X: command not "
        "found\", zsh \"command not found: X\", cmd.exe \"'X' is not recognized as an internal "
        "or external command\")"),
    Message(
        "shell-noise", "shell",
        "a startup file of the remote account prints text or fails in a non-interactive shell.",
        (r"stdin: is not a tty",
         r"Inappropriate ioctl for device",
         r"Received message too long \d+",
         r"protocol error: bad mode|protocol error: mtime\.sec not present"),
        ("stdin: is not a tty",
         "mesg: ttyname failed: Inappropriate ioctl for device",
         "Received message too long 1416128883"),
        (Cause("a startup file (.bashrc, .profile, /etc/profile.d) runs mesg, stty or echo in "
               "a non-interactive shell: guard it with [ -t 0 ] or case $- in *i*", ("MK306",)),
         Cause("the text reaches scp/sftp or the kernel's link and breaks it", ("MK306",))),
        "observed: mesg/stty in Debian's root .profile (\"stdin: is not a tty\", \"mesg: "
        "ttyname failed: Inappropriate ioctl for device\"); " + OSSH + "sftp-client.c "
        "get_msg_extended() (\"Received message too long %u\": the first bytes of a startup "
        "file's text read as a length)"),
    Message(
        "shared-libs", "kernel", "the kernel program starts but a system library is missing.",
        (r"error while loading shared libraries: (?P<lib>\S+): cannot open shared object file",
         r"error while loading shared libraries"),
        ("WolframKernel: error while loading shared libraries: libuuid.so.1: cannot open shared "
         "object file: No such file or directory",
         "/usr/local/Wolfram/Mathematica/13.3/SystemFiles/Kernel/Binaries/Linux-x86-64/"
         "WolframKernel: error while loading shared libraries: libfontconfig.so.1: cannot "
         "open shared object file"),
        (Cause("a minimal server lacks a library the kernel links to (libuuid, libfontconfig, "
               "libGL, libasound...): install the distribution's package for that file",
               ("MK402",), "apt-file search LIBNAME / dnf provides '*/LIBNAME'"),
         Cause("the kernel of another architecture or a damaged install", ("MK401", "MK402"))),
        "glibc's dynamic loader (elf/dl-load.c: \"error while loading shared libraries: %s: "
        "cannot open shared object file\"); which libraries the kernel needs is observed"),
    Message(
        "lib-version", "kernel",
        "a program picked up another copy of a library than the one it was built with.",
        (r"(?P<lib>lib[\w.+-]+\.so[\d.]*): no version information available",
         r"version `[^']+' not found \(required by [^)]+\)"),
        ("ssh: /usr/local/Wolfram/Mathematica/13.2/SystemFiles/Libraries/Linux-x86-64/"
         "libcrypto.so.1.1: no version information available (required by ssh)",
         "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by "
         "WolframKernel)"),
        (Cause("ssh (or another system program) was started from inside Mathematica and "
               "inherited its LD_LIBRARY_PATH, so it loads Mathematica's libcrypto: the "
               "warning is usually harmless, but a launch command should not depend on it",
               ("MK201", "MK306"), "run ssh with env -u LD_LIBRARY_PATH, or by its full path "
                                   "from a clean environment"),
         Cause("the kernel needs a newer C library than the server has (\"GLIBC_2.xx not "
               "found\"): this Mathematica version does not support that Linux release",
               ("MK402",))),
        "glibc's dynamic loader (elf/dl-version.c: \"no version information available\", "
        "\"version `%s' not found (required by %s)\"); the Mathematica libcrypto case is "
        "observed (sakra/Tunnel HISTORY.md 1.1.1, \"SystemFiles/Libraries/libcrypto.so "
        "incompatibility with /usr/bin/ssh\"; its tunnel.sh drops SystemFiles/Libraries from "
        "LD_LIBRARY_PATH before running ssh)"),
    # ------------------------------------------------------------------ licence
    Message(
        "password", "licence", "the kernel found no valid licence for this computer.",
        (r"(?:Mathematica|Wolfram\w*) cannot find a valid password",
         r"cannot find a valid password",
         r"is not activated or is experiencing a license-related problem",
         r"exited during an activation attempt"),
        ("Mathematica cannot find a valid password.",
         "Your Wolfram Engine installation is not activated or is experiencing a "
         "license-related problem.",
         "The product exited during an activation attempt because an error occurred."),
        (Cause("the server's kernel is not activated for your account (the licence is per "
               "user: $UserBaseDirectory/Licensing/mathpass), or it is node-locked to another "
               "machine", ("MK402",), "activate once on the server: run the kernel by hand "
                                      "and follow the prompts, or add a !server line for MathLM"),
         Cause("a licence server (MathLM) is named but not reachable from the server",
               ("MK402",))),
        "observed (no Wolfram reference page lists the wording); mathpass and !server: "
        "reference.wolfram.com/language/tutorial/RegistrationAndPasswords.html, "
        "support.wolfram.com/112"),
    Message(
        "max-processes", "licence", "the licence allows no more kernel processes.",
        (r"\$MaxLicenseProcesses",
         r"\$MaxLicenseSubprocesses",
         r"(?:maximum|limit on the) number of (?:\w+ )*(?:processes|kernels|licen[cs]es)",
         r"all licen[cs]es (?:are )?in use|No licenses? (?:are )?available"),
        ("The number of licensed processes ($MaxLicenseProcesses) has been exceeded",
         "$MaxLicenseSubprocesses",
         "The maximum number of kernels allowed by the license are already running."),
        (Cause("an earlier kernel still runs on the server (left by a front end that quit or a "
               "dropped ssh session) and holds the licence: end it (pkill -u $USER -x "
               "WolframKernel on the server, after checking what it is)", ("MK402",)),
         Cause("the MathLM licence server has every licence in use (monitorlm shows who)",
               ("MK402",)),
         Cause("parallel subkernels count against $MaxLicenseSubprocesses", ("MK402",))),
        "reference.wolfram.com/language/ref/$MaxLicenseProcesses.html and "
        "ref/$MaxLicenseSubprocesses.html (the limits); the message wordings are observed"),
    # ------------------------------------------------------------------ front end / WSTP
    Message(
        "mleconnect", "front end",
        "the kernel did not connect back to the front end's two link ports in time "
        "(a deferred connection is still unconnected).",
        (r"failed to connect to the front end",
         r"Error\s*=\s*(?:ML|WS)ECONNECT",
         r"(?:ML|WS)ECONNECT"),
        ("The kernel Remote failed to connect to the front end. (Error = MLECONNECT). You "
         "should try running the kernel connection outside the front end.",
         "Error = MLECONNECT",
         "WSECONNECT"),
        (Cause("tunnel mode: the reverse forwards are not there (the launch command lacks -R, "
               "or the server refused them) so the kernel finds nothing at 127.0.0.1",
               ("MK403", "MK312", "MK501")),
         Cause("direct mode: a firewall on the laptop (or NAT) drops the kernel's connections "
               "to the link ports", ("MK204", "MK403")),
         Cause("the kernel never started: login, path or licence failed (run the launch "
               "command in a terminal to see its error)", ("MK304", "MK401", "MK402")),
         Cause("the kernel configuration's link name is wrong (quoted `linkname`, "
               "localhost, ports that differ from the forwards)", ("MK501", "MK404"))),
        "MLECONNECT / WSECONNECT: \"a deferred connection is still unconnected\" "
        "(reference.wolfram.com/language/ref/c/MLError.html, ref/c/WSError.html); the "
        "dialog's wording is observed (quoted in full, e.g., in quiterandomnotes.blogspot.com "
        "2013/04 \"Remote kernel for Mathematica via home router\")"),
    Message(
        "dynamic", "front end",
        "Dynamic content (Manipulate, sliders, Dynamic[...]) does not update with the remote "
        "kernel, or only when it is idle.",
        (r"(?-i:\b(?:Dynamic|Manipulate)\b)",
         r"\b(?:Dynamic|Manipulate)\b[^.]{0,40}\b(?:not (?:working|updating)|does(?:n't| not) "
         r"(?:work|update)|frozen|grey|gray)",
         r"preemptive link|service link"),
        ("Dynamic", "Manipulate does not update", "Dynamic is not working with the remote kernel",
         "the preemptive link does not connect"),
        (Cause("tunnel mode: the front end's extra links (preemptive and service) may need ports "
               "the two -R forwards do not carry; what Mathematica 12-14 need is not documented "
               "(docs/guides/dynamic.md): evaluate the verification notebook the setup wrote",
               ("MK403", "MK404")),
         Cause("the notebook is evaluated by another kernel (the local one, or an old entry)",
               ("MK501",)),
         Cause("a slow link: a Dynamic evaluation that takes longer than the front end waits is "
               "aborted", ("MK403",))),
        "observed: sakra/Tunnel issues #3 and #4 (Dynamic broken with tunnelled links since "
        "11.1), github.com/sakra/Tunnel MANUAL.md \"Technical Background\"; see "
        "docs/guides/dynamic.md"),
    Message(
        "mledead", "WSTP", "the link died: the process at the other end is gone.",
        (r"(?:ML|WS)EDEAD", r"(?:ML|WS)ECLOSED", r"link died",
         r"has quit \(exited\) during the course of an evaluation",
         r"The kernel \S+ has quit"),
        ("MLEDEAD", "WSEDEAD link died",
         "The kernel Remote has quit (exited) during the course of an evaluation.",
         "WSECLOSED"),
        (Cause("the ssh session carrying the link dropped (sleep, network change, an idle "
               "NAT timeout)", ("MK302", "MK403")),
         Cause("the kernel crashed or was killed (out of memory on the server, a job limit, "
               "the licence)", ("MK402",)),
         Cause("the kernel started, then could not keep the link (a startup file printing "
               "into the link, a wrong link name)", ("MK306", "MK404"))),
        "WSEDEAD \"link died\", WSECLOSED \"the other side of the link closed the connection\" "
        "(reference.wolfram.com/language/ref/c/WSError.html, ref/c/MLError.html); the "
        "dialog's wording is observed"),
    Message(
        "linkd", "WSTP", "Wolfram Language messages about a link that is not active.",
        (r"LinkObject::linkd", r"LinkConnect::linkc", r"LinkObject::linkw",
         r"Unable to communicate with closed link"),
        ("LinkObject::linkd: Unable to communicate with closed link LinkObject[31415@127.0.0.1,"
         "31416@127.0.0.1, 4, 4].",
         "LinkConnect::linkc: LinkObject[31415@127.0.0.1,31416@127.0.0.1, 3, 3] is not active",
         "LinkObject::linkw"),
        (Cause("the process at the other end exited or never connected (a remote kernel that "
               "died, a subkernel that could not start)", ("MK402", "MK404")),
         Cause("the network path between the two ends is broken (forwards gone, firewall)",
               ("MK403",))),
        "reference.wolfram.com/language/ref/message/LinkObject/linkd.html, "
        "ref/message/LinkConnect/linkc.html (\"an attempt to access a WolframLink connection "
        "that is not active\"), ref/message/LinkObject/linkw.html"),
    Message(
        "name-taken", "WSTP", "the link could not listen: the name (port) is in use.",
        (r"(?:ML|WS)ENAMETAKEN", r"link ?name (?:is|was) already in use"),
        ("MLENAMETAKEN", "WSENAMETAKEN: the linkname was already in use"),
        (Cause("another front end, a stale kernel or a tunnel holds a link port on the laptop",
               ("MK203",), "end it, or choose other --link-ports"),),
        "WSENAMETAKEN \"the linkname was already in use\" "
        "(reference.wolfram.com/language/ref/c/WSError.html)"),
    Message(
        "bad-host", "WSTP", "the link's host part is unreachable or malformed.",
        (r"(?:ML|WS)EBADHOST", r"(?:ML|WS)EBADNAME", r"(?:ML|WS)ENOLISTEN"),
        ("MLEBADHOST", "WSEBADNAME", "WSENOLISTEN"),
        (Cause("the link name (port@host,port@host) in the launch command is malformed or "
               "names an address the kernel cannot reach", ("MK501", "MK404")),
         Cause("direct mode: the link host is not an address of this laptop that the server "
               "reaches", ("MK101", "MK403"))),
        "WSEBADHOST \"the location was unreachable or not properly formed\", WSEBADNAME, "
        "WSENOLISTEN (reference.wolfram.com/language/ref/c/WSError.html)"),
    Message(
        "launch-failed", "WSTP", "the front end could not start the launch command here.",
        (r"(?:ML|WS)ELAUNCHNAME", r"(?:ML|WS)ELAUNCHFAILED", r"(?:ML|WS)ELAUNCH\b"),
        ("MLELAUNCHNAME", "WSELAUNCHFAILED"),
        (Cause("the launch command's first program (ssh, or the wrapper script) is not found "
               "by the front end: give its full path (/usr/bin/ssh; on Windows "
               "C:\\Windows\\System32\\OpenSSH\\ssh.exe)", ("MK201", "MK501")),
         Cause("a path with spaces is not quoted in the launch command", ("MK501",))),
        "WSELAUNCHNAME \"the launch failed because the program could not be found\", "
        "WSELAUNCHFAILED (reference.wolfram.com/language/ref/c/WSError.html)"),
)
