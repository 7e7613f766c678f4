package PAGI::Server::Protocol::HTTP1::PP;
use strict;
use warnings;
use Carp ();
use Socket qw(AF_INET AF_INET6 AF_UNIX IPPROTO_TCP TCP_NODELAY sockaddr_family unpack_sockaddr_in
  unpack_sockaddr_in6 unpack_sockaddr_un inet_ntop);
use Fcntl qw(F_SETFL O_NONBLOCK);

our $VERSION = '0.001';

# The pure-Perl HTTP/1.1 codec: the reference semantics of doc/codec.md.
# Every function here has a twin of the same name in ::XS (Rust).

# The facade's named numbers (F_*, M_*, CHUNK_*); when this module is loaded first, the
# facade loads now and installs its functions from here once they are compiled
BEGIN { require PAGI::Server::Protocol::HTTP1 }
use PAGI::Server::Protocol::Errors;
BEGIN {
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::HTTP1::$_"} for qw(F_HEAD F_CLOSE F_HTTP10 F_UPGRADE M_NONE M_LENGTH
    M_CHUNKED M_CLOSE CHUNK_SIZE CHUNK_DATA_END CHUNK_TRAILER CHUNK_DONE);
}

# {error => KIND, message => TEXT} (the message from the one table), then what follows
sub _error { return ({error => $_[0], message => $PAGI::Server::Protocol::Errors::HTTP{$_[0]}[1]}, 0, @_[1 .. $#_]) }
# An application misuse's message (the app rows of the error table)
sub _misuse { return PAGI::Server::Protocol::Errors::app_message(@_) }

my $TCHAR = qr/[!#\$%&'*+\-.^_`|~0-9A-Za-z]/;

# Fields the parse looks at (1: cookie, merged); all others are only collected
my %SPECIAL = (cookie => 1, map { $_ => 2 } qw(host content-length transfer-encoding
  connection upgrade sec-websocket-key sec-websocket-version accept expect));

# Bytes that may follow in a head whose bytes so far are valid (httparse's reading): a
# request line's start (the target's UTF-8 and form are judged when its SP arrives; a
# version only with its line's end), and a field line's start
my $LINE_SO_FAR = qr{\A(?:\r|[!#\$%&'*+\-.^_`|~0-9A-Za-z]*|[!#\$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e\x80-\xff]*)\z};
my $VERSION_SO_FAR = qr{\A(?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?\z};
my $FIELD_SO_FAR = qr{\A(?:\r|[!#\$%&'*+\-.^_`|~0-9A-Za-z]+(?::[\t\x20-\x7e\x80-\xff]*\r?)?)?\z};

# Well-formed UTF-8 (RFC 3629: perl's own decoder also takes surrogates and code points
# above U+10FFFF); $chars gets the characters
sub _utf8 {
  my ($bytes) = @_;
  my $chars = $bytes;
  return utf8::decode($chars) && $chars !~ /[\x{D800}-\x{DFFF}]|[^\x{0}-\x{10FFFF}]/ ? \$chars : undef;
}

# A request-target's raw path and query (RFC 9112 3.2): the query is split off the whole
# target first, so absolute-form keeps it; raw bytes >= 0x80 only as well-formed UTF-8.
# Empty for a target that is none of origin-form, asterisk, absolute-form.
sub _target {
  my ($target) = @_;
  return if $target =~ /[\x80-\xff]/ && !_utf8($target);
  my ($raw_path, $query_string) = ($target, '');
  my $q = index($target, '?');
  if ($q >= 0) {
    $query_string = substr($target, $q + 1);
    $raw_path     = substr($target, 0, $q);
  }
  if (substr($raw_path, 0, 1) eq '/' || $target eq '*') { }
  elsif ($raw_path =~ m{\A[A-Za-z][A-Za-z0-9+\-.]*://[^/]*(.*)\z}s) {
    $raw_path = length $1 ? $1 : '/';
  }
  else { return }
  return ($raw_path, $query_string);
}

sub parse_request {
  my ($buf, $max_header_size, $max_headers, $max_line) = @_;

  # Skip empty lines before the request line (RFC 9112 2.2)
  my $start = 0;
  $start = $+[0] if $buf =~ /\A(?:\r?\n)+/;

  # 1. The limits, measured without judging the syntax: the request line without its
  # terminator (while incomplete, without a final "\r"), the head up to the first empty
  # line (else every byte) and the complete field lines
  my $nl = index($buf, "\n", $start);
  my ($line, $end, $blank);
  if ($nl < 0) {
    $line = length($buf) - $start - (substr($buf, -1) eq "\r" ? 1 : 0);
  }
  else {
    $line = $nl - $start - ($nl > $start && substr($buf, $nl - 1, 1) eq "\r" ? 1 : 0);
    pos($buf) = $nl;
    if ($buf =~ /\n\r?\n/g) {
      $end   = pos($buf);
      $blank = $end - (substr($buf, $end - 2, 1) eq "\r" ? 2 : 1);
    }
  }
  return _error('uri_too_long') if $line > $max_line;
  return _error('headers_too_large')
    if (defined $end ? $end : length $buf) - $start > $max_header_size
    || ($nl < 0 ? 0 : substr($buf, $nl + 1, ($blank // length $buf) - $nl - 1) =~ tr/\n//) > $max_headers;

  # 2. The syntax: the first byte no valid head could have there is an error, the head
  # complete or not. The request line:
  if ($nl < 0) {
    my $so_far = substr($buf, $start);
    return (undef, 0) if $so_far =~ $LINE_SO_FAR;
    my ($target, $version) = $so_far =~ m{\A[!#\$%&'*+\-.^_`|~0-9A-Za-z]+ ([\x21-\x7e\x80-\xff]+) (.*)\z}s
      or return _error('bad_request_line');
    my @target = _target($target);
    return _error('bad_request_line') unless @target && $version =~ $VERSION_SO_FAR;
    return (undef, 0);
  }
  my $request_line = substr($buf, $start, $nl - $start);
  chop $request_line if substr($request_line, -1) eq "\r";
  my ($method, $target, $version)
    = $request_line =~ m{\A([!#\$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) (.*)\z}s
    or return _error('bad_request_line');
  my ($raw_path, $query_string) = _target($target) or return _error('bad_request_line');
  # HTTP/1.x above 1.1 is read as HTTP/1.1 (RFC 9110 2.5); another major version is 505
  my ($major, $minor) = $version =~ m{\AHTTP/([0-9])\.([0-9])\z} or return _error('bad_request_line');
  return _error('unsupported_version') if $major != 1;

  my (@headers, $cookie_at);
  my ($cl, $cl_error, $te, $keep, $close, $conn_upgrade, $upgrade, $ws_key, $ws_version);
  my ($sse, $expect, $host_count) = (0, 0, 0);
  # The field lines, one match each; the first that does not match is invalid, unless the
  # head is incomplete and it is the last one's valid start
  my $stop = $blank // length $buf;
  pos($buf) = $nl + 1;
  while (pos($buf) < $stop) {
    # field-name ":" OWS field-value OWS (RFC 9112 5); a literal pattern, not a qr
    # (interpolating one costs), and a greedy value trimmed after (a lazy one backtracks)
    if ($buf !~ /\G([!#\$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r?\n/gc) {
      return _error('bad_header') if defined $end || substr($buf, pos $buf) !~ $FIELD_SO_FAR;
      last;
    }
    my ($name, $value) = (lc $1, $2);
    $value =~ s/[ \t]+\z// if substr($value, -1) eq ' ' || substr($value, -1) eq "\t";
    my $kind = $SPECIAL{$name};
    if (!$kind) { push @headers, [$name, $value]; next }
    if ($kind == 1) {    # cookie: merged into the first
      if (defined $cookie_at) { $headers[$cookie_at][1] .= "; $value"; next }
      $cookie_at = @headers;
    }
    push @headers, [$name, $value];
    if    ($name eq 'host') { $host_count++ }
    elsif ($name eq 'content-length') {
      # An empty value is one empty (invalid) element, not "no length"
      my @elements = split /,/, $value, -1;
      @elements = ('') unless @elements;
      for my $e (@elements) {
        $e =~ s/\A[ \t]+//; $e =~ s/[ \t]+\z//;
        if ($e !~ /\A[0-9]{1,18}\z/) { $cl_error //= 'bad_content_length'; next }
        if (defined $cl && $cl != $e) { $cl_error //= 'conflicting_length'; next }
        $cl = 0 + $e;
      }
    }
    elsif ($name eq 'transfer-encoding') { $te = defined $te ? "$te,$value" : $value }
    elsif ($name eq 'connection') {
      for my $t (split /,/, $value) {
        $t =~ s/\A[ \t]+//; $t =~ s/[ \t]+\z//; $t = lc $t;
        if    ($t eq 'close')      { $close = 1 }
        elsif ($t eq 'keep-alive') { $keep = 1 }
        elsif ($t eq 'upgrade')    { $conn_upgrade = 1 }
      }
    }
    elsif ($name eq 'upgrade')               { $upgrade    = lc $value }
    elsif ($name eq 'sec-websocket-key')     { $ws_key     = $value }
    elsif ($name eq 'sec-websocket-version') { $ws_version = $value }
    elsif ($name eq 'accept')                { $sse        = 1 if $value =~ m{text/event-stream}i }
    elsif ($name eq 'expect')                { $expect     = 1 if lc($value) eq '100-continue' }
  }

  return (undef, 0) unless defined $end;

  # 3. Semantics: host, then message length (RFC 9112 3.2, 6.3)
  my $http10 = $minor == 0;
  return _error('bad_host') if $http10 ? $host_count > 1 : $host_count != 1;
  return _error($cl_error) if defined $cl_error;
  my $chunked = 0;
  if (defined $te) {
    return _error('conflicting_length') if defined $cl;
    my @codings = grep { length } map { s/\A[ \t]+//r =~ s/[ \t]+\z//r } split /,/, lc $te;
    return _error('bad_transfer_encoding') unless @codings;
    return _error('unsupported_transfer_encoding') unless @codings == 1 && $codings[0] eq 'chunked';
    $chunked = 1;
  }

  my $path = $raw_path;
  $path =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge if index($path, "%") >= 0;
  # Characters only when the bytes are well-formed UTF-8; else keep bytes
  if ($path =~ /[\x80-\xff]/) {
    my $chars = _utf8($path);
    $path = $$chars if $chars;
  }

  my %req = (
    method       => $method,
    path         => $path,
    raw_path     => $raw_path,
    query_string => $query_string,
    http_version => $http10 ? '1.0' : '1.1',
    headers      => \@headers,
  );
  # The other facts only when set: a plain keep-alive GET is just the six scope keys
  $req{close}           = 1           if $close || $http10 && !$keep;
  $req{content_length}  = $cl         if defined $cl;
  $req{chunked}         = 1           if $chunked;
  $req{upgrade}         = $upgrade    if $conn_upgrade && defined $upgrade;
  $req{ws_key}          = $ws_key     if defined $ws_key;
  $req{ws_version}      = $ws_version if defined $ws_version;
  $req{sse}             = 1           if $sse;
  # (RFC 9110 10.1.1: ignored in an HTTP/1.0 request, whose client knows no 1xx)
  $req{expect_continue} = 1           if $expect && !$http10;
  return (\%req, $end);
}

my $MAX_CHUNK_LINE = 4096;

sub decode_chunked {
  my ($buf, $state, $max_trailer) = @_;
  my ($pos, $len, $data) = (0, length $buf, '');
  while ($pos < $len) {
    if ($state > 0) {
      my $take = $len - $pos < $state ? $len - $pos : $state;
      $data .= substr($buf, $pos, $take);
      $pos += $take;
      $state -= $take;
      $state = CHUNK_DATA_END if $state == 0;
    }
    elsif ($state == CHUNK_SIZE) {
      my $nl = index($buf, "\n", $pos);
      if ($nl < 0) {
        # A chunk-size line is at most $MAX_CHUNK_LINE bytes, complete or not
        return _error('bad_chunk', $state)
          if $len - $pos - (substr($buf, -1) eq "\r" ? 1 : 0) > $MAX_CHUNK_LINE;
        last;
      }
      my $line = substr($buf, $pos, $nl - $pos);
      chop $line if substr($line, -1) eq "\r";
      return _error('bad_chunk', $state)
        if length $line > $MAX_CHUNK_LINE;
      $line =~ /\A([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?\z/
        or return _error('bad_chunk', $state);
      my $size = do { no warnings 'portable'; hex $1 };    # up to 15 digits: 60 bits
      $state = $size ? $size : CHUNK_TRAILER;
      $pos = $nl + 1;
    }
    elsif ($state == CHUNK_DATA_END) {
      my $c = substr($buf, $pos, 1);
      if ($c eq "\n") { $pos++; $state = CHUNK_SIZE; next }
      if ($c eq "\r") {
        last if $pos + 1 >= $len;
        if (substr($buf, $pos + 1, 1) eq "\n") { $pos += 2; $state = CHUNK_SIZE; next }
      }
      return _error('bad_chunk', $state);
    }
    elsif ($state == CHUNK_TRAILER) {
      my $nl = index($buf, "\n", $pos);
      if ($nl < 0) {
        return _error('headers_too_large', $state)
          if $len - $pos > $max_trailer;
        last;
      }
      my $line = substr($buf, $pos, $nl - $pos);
      chop $line if substr($line, -1) eq "\r";
      return _error('bad_chunk', $state)
        if index($line, "\r") >= 0;
      # The budget counts raw bytes, terminators included, over this call's lines
      my $used = $nl + 1 - $pos;
      return _error('headers_too_large', $state)
        if $used > $max_trailer;
      $pos = $nl + 1;
      if ($line eq '') { $state = CHUNK_DONE; last }
      $max_trailer -= $used;
    }
    else { last }
  }
  return ($data, $pos, $state);
}

# The reason phrases: the one table (reasons.tsv, through PAGI::Server::Protocol::Errors)
our %REASON;
*REASON = \%PAGI::Server::Protocol::Errors::REASON;

my @DAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
my ($date_time, $date_line) = (-1, '');

# The Date line, rebuilt at most once a second
sub _date_line {
  my $now = time;
  return $date_line if $now == $date_time;
  my ($s, $m, $h, $d, $mon, $y, $wd) = gmtime $now;
  $date_time = $now;
  return $date_line = sprintf "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
    $DAY[$wd], $d, $MON[$mon], $y + 1900, $h, $m, $s;
}

# The Date value alone (the HTTP/2 codec's date field)
sub _date_value { return substr(_date_line(), 6, -2) }

# Validates app headers and writes them; returns (bytes, date seen, server seen,
# content-length or undef, close) or (undef, message)
sub _app_headers {
  my ($headers) = @_;
  my ($out, $date, $server, $cl, $close) = ('', 0, 0, undef, 0);
  for my $h (@$headers) {
    my ($n, $v) = @$h;
    $n = '' unless defined $n;
    $v = '' unless defined $v;
    return (undef, _misuse(bad_name => $n)) if $n !~ /\A$TCHAR+\z/;
    return (undef, _misuse(bad_value => $n)) if $v =~ /[\r\n\0]|[^\x00-\xff]/;
    my $lc = lc $n;
    if ($lc eq 'transfer-encoding') { next }
    if ($lc eq 'connection') {
      $close = 1 if grep { lc(s/\A[ \t]+//r =~ s/[ \t]+\z//r) eq 'close' } split /,/, $v;
      next;
    }
    if    ($lc eq 'date')   { $date   = 1 }
    elsif ($lc eq 'server') { $server = 1 }
    elsif ($lc eq 'content-length') {
      return (undef, _misuse(bad_length => $v)) if $v !~ /\A[0-9]{1,18}\z/;
      return (undef, _misuse('conflicting_length')) if defined $cl && $cl != $v;
      $cl = 0 + $v;
    }
    $out .= "$n: $v\r\n";
  }
  return ($out, $date, $server, $cl, $close);
}

# A response status: three digits, 100-999
use constant STATUS => qr/\A[1-9][0-9][0-9]\z/;

sub check_headers {
  my ($headers) = @_;
  # A status given (a second argument, even undef) first: a response head's
  return _misuse('bad_status') if @_ > 1 && !(defined $_[1] && $_[1] =~ STATUS);
  # The shape first (serialize_response treats a bad shape as misuse)
  return _misuse('bad_shape')
    if defined $headers
    && (ref $headers ne 'ARRAY' || grep { ref $_ ne 'ARRAY' || @$_ != 2 } @$headers);
  my ($out, $err) = _app_headers($headers // []);
  return defined $out ? undef : $err;
}


# The Server field's value of every response serialized from now on (set_server_header;
# '': none); HTTP/2 sessions (::HTTP2::PP) take it when they are made
my $SERVER = '';

sub set_server_header {
  my ($value) = @_;
  $value = '' unless defined $value;
  Carp::croak('set_server_header: the value must be bytes, not a string with characters over 0xFF')
    if utf8::is_utf8($value) && !utf8::downgrade($value, 1);
  Carp::croak('set_server_header: not a valid field value (CR, LF or NUL)') if $value =~ /[\r\n\0]/;
  $SERVER = $value;
  return;
}

sub _server_value { $SERVER }

sub serialize_response {
  my ($status, $headers, $flags, $body) = @_;
  Carp::croak('serialize_response: body must be bytes, not characters')
    if defined $body && utf8::is_utf8($body) && !utf8::downgrade(my $copy = $body, 1);
  return (undef, _misuse('bad_status')) unless defined $status && $status =~ STATUS;
  my ($out, $date, $server, $cl, $close) = _app_headers($headers // []);
  return (undef, $date) unless defined $out;
  $flags //= 0;
  my $head = $flags & F_HEAD;
  my ($mode, $length);
  my $frame = '';
  if ($status < 200 || $status == 204 || $status == 304) { $mode = M_NONE }
  elsif (defined $cl) { $mode = $head ? M_NONE : M_LENGTH; $length = $cl }
  elsif (defined $body) {
    $length = length $body;
    $frame  = "Content-Length: $length\r\n";
    $mode   = $head ? M_NONE : M_LENGTH;
  }
  elsif (!($flags & F_HTTP10)) {
    $frame = "Transfer-Encoding: chunked\r\n";
    $mode  = $head ? M_NONE : M_CHUNKED;
  }
  else { $mode = $head ? M_NONE : M_CLOSE }
  $length = undef unless $mode == M_LENGTH;
  my $upgrade = $flags & F_UPGRADE;
  $close = $upgrade ? 0 : $close || $flags & F_CLOSE || $mode == M_CLOSE ? 1 : 0;
  my $reason = $REASON{$status} // '';
  my $bytes = "HTTP/1.1 $status $reason\r\n$out"
    . ($date   ? '' : _date_line())
    . ($server || !length $SERVER ? '' : "Server: $SERVER\r\n")
    . $frame
    . ($upgrade ? "Connection: Upgrade\r\n" : $close ? "Connection: close\r\n"
      : $flags & F_HTTP10 ? "Connection: keep-alive\r\n" : '')
    . "\r\n";
  $bytes .= $body if defined $body && $mode != M_NONE;
  return ($bytes, $mode, $close, $length);
}

sub serialize_chunk {
  my ($data) = @_;
  return '' unless length $data;
  Carp::croak('serialize_chunk: data must be bytes, not characters')
    if utf8::is_utf8($data) && !utf8::downgrade(my $copy = $data, 1);
  return sprintf("%x\r\n", length $data) . $data . "\r\n";
}

sub serialize_trailers {
  my ($headers) = @_;
  my $err = _trailer_error($headers);
  return (undef, $err) if defined $err;
  return ("0\r\n" . join('', map { "$_->[0]: " . ($_->[1] // '') . "\r\n" } @{$headers // []}) . "\r\n");
}

# The first invalid trailer field's message (names and values only), or undef
sub _trailer_error {
  my ($headers) = @_;
  for my $h (@{$headers // []}) {
    my ($n, $v) = @$h;
    $n = '' unless defined $n;
    $v = '' unless defined $v;
    return _misuse(bad_name => $n) if $n !~ /\A$TCHAR+\z/;
    return _misuse(bad_value => $n) if $v =~ /[\r\n\0]|[^\x00-\xff]/;
  }
  return undef;
}

# Trailers as the HTTP/2 codec takes them: the shape first, as check_headers
sub _check_trailers {
  my ($headers) = @_;
  return _misuse('bad_shape')
    if defined $headers
    && (ref $headers ne 'ARRAY' || grep { ref $_ ne 'ARRAY' || @$_ != 2 } @$headers);
  return _trailer_error($headers);
}

sub _host_port {
  my ($addr) = @_;
  my $family = sockaddr_family($addr);
  if ($family == AF_INET) {
    my ($port, $ip) = unpack_sockaddr_in($addr);
    return (inet_ntop(AF_INET, $ip), $port);
  }
  if ($family == AF_INET6) {
    my ($port, $ip) = unpack_sockaddr_in6($addr);
    my $host = inet_ntop(AF_INET6, $ip);
    $host =~ s/\A::ffff:(?=[0-9]+\.)//i;
    return ($host, $port);
  }
  return;
}

# A new connection on the listening handle: (handle, peer host, peer port, and with
# $want_local the local host and port), non-blocking, TCP_NODELAY with $nodelay; () with
# $! set when none could be taken (EAGAIN: none waiting). The peer is what accept
# returned (no getpeername); a Unix socket's peer is (undef, undef) and its local end
# (path, undef).
sub accept_socket {
  my ($listener, $nodelay, $want_local) = @_;
  my $peer = CORE::accept(my $fh, $listener) or return;
  fcntl($fh, F_SETFL, O_NONBLOCK);
  setsockopt($fh, IPPROTO_TCP, TCP_NODELAY, 1) if $nodelay;
  my @peer = length $peer && sockaddr_family($peer) != AF_UNIX ? _host_port($peer) : (undef, undef);
  return ($fh, @peer) unless $want_local;
  my $local = getsockname($fh) // return ($fh, @peer);
  return ($fh, @peer, sockaddr_family($local) == AF_UNIX ? (eval { unpack_sockaddr_un($local) } // '', undef)
    : _host_port($local));
}

sub connection_info {
  my ($fd) = @_;
  # A dup, so that closing our handle leaves the connection's descriptor alone
  open(my $fh, '+<&', $fd) or return undef;
  my $local = getsockname($fh);
  my $peer  = getpeername($fh);
  close $fh;
  return undef unless defined $local && defined $peer;
  if (sockaddr_family($local) == AF_UNIX) {
    my $path = eval { unpack_sockaddr_un($local) } // '';
    return [undef, undef, $path, undef];
  }
  return [_host_port($peer), _host_port($local)];
}

1;
