package PAGI::Server::TLS;
use strict;
use warnings;
use experimental 'signatures';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Socket::SSL ();
use Net::SSLeay ();
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Config qw(SSL_CERT SSL_KEY SSL_CA SSL_VERIFY_CLIENT SSL_MIN_VERSION SSL_CIPHER_LIST HTTP2);

our $VERSION = '0.001';

# TLS for PAGI::Server: the server context, the non-blocking handshake of accepted
# sockets inside the IO::Async loop, the scope's `tls` extension, and the retry rules
# for reads that want a write and writes that want a read. A TLS connection is an
# ordinary PAGI::Server::Connection whose handle is an IO::Socket::SSL: core sysread
# and syswrite on it go through OpenSSL and report EAGAIN like a plain socket.

use constant {
  SSL_WANT_READ  => IO::Socket::SSL::SSL_WANT_READ(),
  SSL_WANT_WRITE => IO::Socket::SSL::SSL_WANT_WRITE(),
};

# OpenSSL has no public call from a cipher to its IANA number in Net::SSLeay 1.92, so
# the scope's cipher_suite comes from this table (RFC 8446 B.4, RFC 5289, RFC 7905);
# a suite not listed is reported as undef, which the spec allows.
my %CIPHER_ID = (
  TLS_AES_128_GCM_SHA256 => 0x1301, TLS_AES_256_GCM_SHA384 => 0x1302,
  TLS_CHACHA20_POLY1305_SHA256 => 0x1303, TLS_AES_128_CCM_SHA256 => 0x1304,
  TLS_AES_128_CCM_8_SHA256 => 0x1305,
  'ECDHE-ECDSA-AES128-GCM-SHA256' => 0xC02B, 'ECDHE-ECDSA-AES256-GCM-SHA384' => 0xC02C,
  'ECDHE-RSA-AES128-GCM-SHA256' => 0xC02F, 'ECDHE-RSA-AES256-GCM-SHA384' => 0xC030,
  'ECDHE-RSA-CHACHA20-POLY1305' => 0xCCA8, 'ECDHE-ECDSA-CHACHA20-POLY1305' => 0xCCA9,
  'DHE-RSA-CHACHA20-POLY1305' => 0xCCAA,
  'ECDHE-ECDSA-AES128-SHA256' => 0xC023, 'ECDHE-ECDSA-AES256-SHA384' => 0xC024,
  'ECDHE-RSA-AES128-SHA256' => 0xC027, 'ECDHE-RSA-AES256-SHA384' => 0xC028,
  'ECDHE-ECDSA-AES128-SHA' => 0xC009, 'ECDHE-ECDSA-AES256-SHA' => 0xC00A,
  'ECDHE-RSA-AES128-SHA' => 0xC013, 'ECDHE-RSA-AES256-SHA' => 0xC014,
  'DHE-RSA-AES128-GCM-SHA256' => 0x009E, 'DHE-RSA-AES256-GCM-SHA384' => 0x009F,
  'DHE-RSA-AES128-SHA256' => 0x0067, 'DHE-RSA-AES256-SHA256' => 0x006B,
  'DHE-RSA-AES128-SHA' => 0x0033, 'DHE-RSA-AES256-SHA' => 0x0039,
  'AES128-GCM-SHA256' => 0x009C, 'AES256-GCM-SHA384' => 0x009D,
  'AES128-SHA256' => 0x003C, 'AES256-SHA256' => 0x003D,
  'AES128-SHA' => 0x002F, 'AES256-SHA' => 0x0035,
);

my %VERIFY = (none => 1, optional => 1, require => 1);

# The server's TLS context, made once per process (after fork in a worker).
# Dies with a readable message when the certificate or key cannot be used.
# ssl_min_version's names, oldest first (IO::Socket::SSL's spelling)
our @VERSIONS = qw(SSLv2 SSLv3 TLSv1 TLSv1_1 TLSv1_2 TLSv1_3);
our %VERSION_INDEX = map { ($VERSIONS[$_] => $_) } 0 .. $#VERSIONS;

sub context ($cfg) {
  my %o = (
    SSL_server      => 1,
    SSL_cert_file   => $cfg->[SSL_CERT],
    SSL_key_file    => $cfg->[SSL_KEY],
    # Renegotiation is the one way a write could need a read in TLS 1.2: refuse it
    SSL_honor_cipher_order => 1,
  );
  my $verify = $cfg->[SSL_VERIFY_CLIENT] // 'none';
  die "PAGI::Server: ssl_verify_client must be none, optional or require\n" unless $VERIFY{$verify};
  $o{SSL_ca_file} = $cfg->[SSL_CA] if defined $cfg->[SSL_CA];
  if (defined(my $min = $cfg->[SSL_MIN_VERSION])) {
    # A floor, not a pin: every version from it up may be negotiated
    my @below = @VERSIONS[0 .. $VERSION_INDEX{$min} - 1];
    $o{SSL_version} = join ':', 'SSLv23', map { "!$_" } @below;
  }
  $o{SSL_cipher_list} = $cfg->[SSL_CIPHER_LIST] if defined $cfg->[SSL_CIPHER_LIST];
  # http2: ALPN offers h2 first, http/1.1 beside it (RFC 9113 3.2)
  $o{SSL_alpn_protocols} = ['h2', 'http/1.1'] if $cfg->[HTTP2];
  if ($verify eq 'none') { $o{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_NONE() }
  elsif ($verify eq 'require') {
    $o{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_PEER()
      | IO::Socket::SSL::SSL_VERIFY_FAIL_IF_NO_PEER_CERT();
  }
  else {
    # Ask for a certificate, accept the connection whatever it is, and report the
    # verification result as client_cert_error
    $o{SSL_verify_mode} = IO::Socket::SSL::SSL_VERIFY_PEER();
    $o{SSL_verify_callback} = sub { 1 };
  }
  my $ctx = IO::Socket::SSL::SSL_Context->new(\%o)
    or die "PAGI::Server: cannot use TLS certificate '$cfg->[SSL_CERT]' and key '$cfg->[SSL_KEY]': "
      . (IO::Socket::SSL::errstr() =~ s/\s+\z//r) . "\n";
  my $ctx_ptr = $ctx->{context};
  Net::SSLeay::CTX_set_options($ctx_ptr, Net::SSLeay::OP_NO_RENEGOTIATION())
    if eval { Net::SSLeay::OP_NO_RENEGOTIATION() };
  return $ctx;
}

# The server certificate as PEM (the first one in the file), read once
sub server_pem ($file) {
  open(my $fh, '<', $file) or return undef;
  local $/;
  my $s = <$fh> // '';
  return $s =~ /(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?)/s ? $1 : undef;
}

# Starts the handshake of an accepted socket (loop, ctx: the context, sock, cert_pem:
# the server certificate for the scope, log: sub ($level, $msg)). The handshake
# ({ssl, abort}: the server calls abort at its deadline or when it stops) is given to
# started->($hs) before its first step, ended->($hs) when it is over either way, and
# done->($ssl_handle, $tls_info) once it completed; a failed or timed-out handshake
# just closes the socket (logged at debug level: port scanners and plain-HTTP clients
# are routine).
sub handshake (%arg) {
  my ($loop, $sock, $log) = @arg{qw(loop sock log)};
  my $ssl = IO::Socket::SSL->start_SSL($sock,
    SSL_server => 1, SSL_startHandshake => 0, SSL_reuse_ctx => $arg{ctx},
    # A failed handshake must not close the socket behind the loop's back: the loop
    # still watches its descriptor, which the next accept may reuse
    SSL_error_trap => sub { });
  if (!$ssl) {
    $log->(debug => 'TLS setup failed: ' . IO::Socket::SSL::errstr());
    close $sock;
    return;
  }
  my $hs = {ssl => $ssl};
  my $finish = sub ($ok) {
    return if $hs->{over}++;
    $loop->unwatch_io(handle => $ssl, on_read_ready => 1, on_write_ready => 1);
    $arg{ended}->($hs);
    return $arg{done}->($ssl, info($arg{cert_pem}, $ssl)) if $ok;
    close $ssl;
  };
  $hs->{abort} = sub { $finish->(0) };
  my $step;
  $step = sub {
    if ($ssl->accept_SSL) { undef $step; return $finish->(1) }
    my $err = $IO::Socket::SSL::SSL_ERROR;
    if ($err == SSL_WANT_READ || $err == SSL_WANT_WRITE) {
      my $want = $err == SSL_WANT_READ ? 'r' : 'w';
      return if ($hs->{want} // '') eq $want;
      $loop->unwatch_io(handle => $ssl, on_read_ready => 1, on_write_ready => 1) if $hs->{want};
      $hs->{want} = $want;
      $loop->watch_io(handle => $ssl, $want eq 'r' ? 'on_read_ready' : 'on_write_ready',
        sub { $step->() if $step });
      return;
    }
    $log->(debug => 'TLS handshake failed: ' . ($err || IO::Socket::SSL::errstr()));
    undef $step;
    $finish->(0);
  };
  $arg{started}->($hs);
  $step->();
}

# The scope's `tls` extension for one connection (PAGI TLS spec), computed once
sub info ($cert_pem, $ssl) {
  my $s = $ssl->_get_ssl_object;
  my $cipher = Net::SSLeay::get_cipher($s);
  my (@chain, $name, $error);
  if (my $leaf = Net::SSLeay::get_peer_certificate($s)) {
    push @chain, Net::SSLeay::PEM_get_string_X509($leaf);
    $name = Net::SSLeay::X509_NAME_print_ex(Net::SSLeay::X509_get_subject_name($leaf),
      Net::SSLeay::XN_FLAG_RFC2253());
    # On a server the peer chain leaves out the leaf; keep the rest in order
    for my $c (Net::SSLeay::get_peer_cert_chain($s)) {
      my $pem = Net::SSLeay::PEM_get_string_X509($c);
      push @chain, $pem unless $pem eq $chain[0];
    }
    Net::SSLeay::X509_free($leaf);
    my $rc = Net::SSLeay::get_verify_result($s);
    $error = Net::SSLeay::X509_verify_cert_error_string($rc) if $rc;
  }
  return {
    server_cert       => $cert_pem,
    client_cert_chain => \@chain,
    client_cert_name  => $name,
    client_cert_error => $error,
    tls_version       => Net::SSLeay::version($s) || undef,
    cipher_suite      => defined $cipher ? $CIPHER_ID{$cipher} : undef,
  };
}

# ---- a Connection's handle is TLS ------------------------------------------------

# A TLS connection's session record, in the connection's field TLS: the scope's tls
# extension (computed once, after the handshake), and whether a read waits for the
# socket to be writable (read_wants_write) or a write for it to be readable
# (write_wants_read)
use PAGI::Server::Record qw(extension read_wants_write write_wants_read);

# Makes the connection's session record and replaces its readiness callbacks with
# ones that also serve the cross-direction retries below. They live in the object (not
# the class), so they survive the re-bless into the WebSocket or SSE connection classes.
sub setup_connection ($conn, $info) {
  $conn->[TLS] = [$info, 0, 0];
  my $tls = $conn->[TLS];
  $conn->[ON_READ] = sub {
    if ($tls->[WRITE_WANTS_READ]) {
      # A write was waiting for the peer's bytes: retry it, watch writes again
      $tls->[WRITE_WANTS_READ] = 0;
      if (length $conn->[WBUF]) {
        $conn->[LOOP]->watch_io(handle => $conn->[FH], on_write_ready => $conn->[ON_WRITE]);
        $conn->_on_write;
        return if $conn->[PHASE] == PAGI::Server::Connection::CLOSED();
      }
      if (!$conn->[READING]) {
        $conn->[LOOP]->unwatch_io(handle => $conn->[FH], on_read_ready => 1);
        return;
      }
    }
    $conn->_on_read;
  };
  $conn->[ON_WRITE] = sub {
    if ($tls->[READ_WANTS_WRITE]) {
      # A read was waiting to write (TLS 1.3 key update): retry the read
      $tls->[READ_WANTS_WRITE] = 0;
      $conn->[LOOP]->unwatch_io(handle => $conn->[FH], on_write_ready => 1)
        unless length $conn->[WBUF];
      $conn->_on_read;
      return if $conn->[PHASE] == PAGI::Server::Connection::CLOSED();
    }
    $conn->_on_write if length $conn->[WBUF];
  };
}

# The scope's tls extension of a TLS connection
sub extension_of ($conn) { $conn->[TLS][EXTENSION] }

# Called by the connection when a read or write on its TLS handle returned EAGAIN:
# OpenSSL may want the other direction (a read needing a write, or the reverse)
sub again ($conn, $op) {
  my $err = $IO::Socket::SSL::SSL_ERROR or return;
  my $loop = $conn->[LOOP];
  my $tls = $conn->[TLS];
  if ($op eq 'read' && $err == SSL_WANT_WRITE && !$tls->[READ_WANTS_WRITE]) {
    $tls->[READ_WANTS_WRITE] = 1;
    $loop->watch_io(handle => $conn->[FH], on_write_ready => $conn->[ON_WRITE]);
  }
  elsif ($op eq 'write' && $err == SSL_WANT_READ && !$tls->[WRITE_WANTS_READ]) {
    # Writable is not what we wait for: stop the write watch, wait for input
    $tls->[WRITE_WANTS_READ] = 1;
    $loop->unwatch_io(handle => $conn->[FH], on_write_ready => 1);
    $loop->watch_io(handle => $conn->[FH], on_read_ready => $conn->[ON_READ]);
  }
}

1;

=head1 NAME

PAGI::Server::TLS - TLS support for PAGI::Server

=head1 DESCRIPTION

Internal. Given C<ssl_cert> and C<ssl_key>, PAGI::Server wraps every accepted socket
in L<IO::Socket::SSL> and runs the handshake without blocking inside the
L<IO::Async> loop (bounded by C<header_timeout>); the connection then reads and
writes the TLS handle with C<sysread>/C<syswrite> as it would a plain socket. When
OpenSSL needs to write during a read (or to read during a write) the connection
waits for that readiness instead. TLS renegotiation is refused.

Scopes of TLS connections have C<scheme> C<https> (C<wss> for WebSocket) and the
C<tls> extension: C<server_cert> (PEM), C<client_cert_chain> (PEMs, leaf first),
C<client_cert_name> (RFC 4514), C<client_cert_error>, C<tls_version> (e.g. C<0x0304>)
and C<cipher_suite> (e.g. C<0x1301>; C<undef> for a suite missing from the table
of IANA numbers here). It is computed once per connection.

C<ssl_verify_client> (C<none>, C<optional>, C<require>) and C<ssl_ca> control client
certificates: C<optional> asks for one and reports a failed verification in
C<client_cert_error> instead of refusing the connection.

=cut
