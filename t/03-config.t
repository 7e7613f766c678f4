use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use PAGI::Server::Config qw(:fields);

# The option table is the one source: every option has its POD item (with its
# default), --help shows every command-line spelling, the record it makes is
# read-only, and the rules it states hold.

my %option = %PAGI::Server::Config::OPTION;

subtest 'the POD lists exactly the options of the table, each with its default' => sub {
  open my $fh, '<', $INC{'PAGI/Server/Config.pm'} =~ s/\.pm\z/.pod/r or die $!;
  my $text = do { local $/; <$fh> };
  my ($pod) = $text =~ /^=head1 OPTIONS\n(.*?)^=back/ms or return fail('no OPTIONS section');
  my %item;
  while ($pod =~ /^=item (\S+)\n\n(.*?)(?=^=item |\z)/msg) { $item{$1} = $2 }
  is_deeply([sort keys %item], [sort keys %option], 'one =item per option, no other');
  for my $name (sort keys %option) {
    my $o = $option{$name};
    next unless defined $o->{default} && !ref $o->{default} && length $o->{default} && $o->{type} ne 'bool';
    my $para = $item{$name} // '';
    $para =~ s/\s+/ /g;
    like($para, qr/(?<![0-9.])\Q$o->{default}\E(?![0-9]|\.[0-9])/, "$name: its POD states its default ($o->{default})");
  }
};

subtest '--help shows every spelling of every command-line option' => sub {
  require PAGI::Server::Runner;
  my $help = PAGI::Server::Runner::usage();
  for my $name (PAGI::Server::Config::cli_names()) {
    my $flag = length $name == 1 ? "-$name" : "--$name";
    like($help, qr/(?:^|[\s,(])\Q$flag\E(?![\w-])/m, "$flag is in --help");
  }
  for my $o (grep { $_->{cli} && defined $_->{default} && !ref $_->{default} && $_->{type} =~ /whole|seconds/ }
    @PAGI::Server::Config::TABLE) {
    my ($long) = grep { length > 1 } split /\|/, ($o->{cli} =~ /\A([^=!]+)/)[0];
    my ($block) = $help =~ /^ +(?:-\w, )*--\Q$long\E\b(.*?)(?=^ +-|^\S|\z)/ms;
    like($block // '', qr/\(\Q$o->{default}\E[);]/, "--$long: --help shows its default ($o->{default})")
      unless defined $o->{shown};
  }
};

subtest 'a record is checked and read-only' => sub {
  my $app = sub { };
  my $cfg = PAGI::Server::Config->new({app => $app, timeout => 7, max_header_count => 9});
  isa_ok($cfg, 'PAGI::Server::Config');
  is($cfg->[KEEPALIVE_TIMEOUT], 7, 'upstream name timeout sets keepalive_timeout');
  is($cfg->get('timeout'), 7, '... and get reads it by either name');
  is($cfg->[MAX_HEADERS], 9, 'max_header_count sets max_headers');
  is($cfg->[MAX_BODY_SIZE], 10 * 1024 * 1024, 'a default');
  is_deeply($cfg->[PARSE_LIMITS], [16384, 9, 8192], 'derived: the parser limits in its argument order');
  is($cfg->[KEEPALIVE_TIMEOUT_S], 7, 'derived: the keep-alive deadline');
  is($cfg->[H2_SETTINGS], undef, 'no HTTP/2 settings without http2');
  my $h2 = PAGI::Server::Config->new({app => $app, http2 => 1, h2_rst_rate_limit => {burst => 10, rate => 2},
    h2_enable_connect_protocol => 0});
  is_deeply($h2->[H2_SETTINGS], {max_concurrent_streams => 100, initial_window_size => 65535, max_frame_size => 16384,
    max_header_list_size => 65536, enable_push => 0, enable_connect_protocol => 0, rst_rate_limit => [10, 2],
    max_headers => 100}, "derived: the HTTP/2 session's settings (upstream's {burst, rate} read)");
  is_deeply(PAGI::Server::Config->new({app => $app, http2 => 1, h2_rst_rate_limit => '5,1'})->[H2_SETTINGS]{rst_rate_limit},
    [5, 1], '... "burst,rate" too');
  ok(!eval { $cfg->[MAX_BODY_SIZE] = 1; 1 }, 'a field cannot be changed');
  like($@, qr/read-only/, '... (read-only)');
  ok(!eval { $cfg->[999] = 1; 1 }, 'nor a field added');
  my $new = PAGI::Server::Config->new({max_body_size => 5}, $cfg);
  is($new->[MAX_BODY_SIZE], 5, 'a change makes a new record');
  is($new->[KEEPALIVE_TIMEOUT], 7, '... keeping the other values');
  is($cfg->[MAX_BODY_SIZE], 10 * 1024 * 1024, '... and leaves the old one as it was');
  ok(!eval { PAGI::Server::Config->new({port => 1}, $cfg, 1); 1 }, 'a fixed option cannot change once listening');
  like($@, qr/port cannot change once the server is listening/, '... saying so');
  ok(eval { PAGI::Server::Config->new({max_body_size => 1}, $cfg, 1); 1 }, 'another can');
};

subtest 'checks, with their messages' => sub {
  my $app = sub { };
  for my $case (
    [{app => $app, port => 'http'}, qr/port must be a non-negative number, not 'http'/],
    [{app => $app, port => 1.5}, qr/port must be a whole number, not '1.5'/],
    [{app => $app, request_timeout => -1}, qr/request_timeout must be a non-negative number/],
    [{app => $app, log_level => 'loud'}, qr/log_level must be one of error, warn, info, debug, not 'loud'/],
    [{app => $app, lifespan => 'maybe'}, qr/lifespan_mode must be one of auto, on, off, not 'maybe'/],
    [{app => $app, write_low_watermark => 10, write_high_watermark => 5}, qr/write_low_watermark must not be above write_high_watermark/],
    [{app => $app, heartbeat_timeout => 1}, qr/heartbeat_timeout must be 0 \(off\) or at least 2 seconds/],
    [{app => $app, max_receive_queue => 0}, qr/max_receive_queue must be at least 1/],
    [{app => $app, backend => 'turbo'}, qr/backend must be one of auto, xs, pp, not 'turbo'/],
    [{app => $app, access_log_format => '%Z'}, qr/unknown field %Z/],
    [{app => $app, env => 'two words'}, qr/env must be a word/],
    [{app => $app, ssl_cert => '/nonexistent'}, qr/SSL certificate file not found: \/nonexistent \(ssl_cert\)/],
    [{app => $app, ssl_cert => __FILE__}, qr/ssl_cert and ssl_key go together/],
    [{app => $app, h2_max_frame_size => 1}, qr/h2_max_frame_size must be from 16384 to 16777215/],
    [{app => $app, h2_rst_rate_limit => 'lots'}, qr/h2_rst_rate_limit must be \{burst => N, rate => N\}/],
    [{app => $app, sync_file_threshold => 1}, qr/sync_file_threshold is not supported: file bodies/],
    [{app => $app, max_body_sise => 1}, qr/unknown option\(s\): max_body_sise \(did you mean max_body_size\?\)/],
    [{app => $app, listen => ['nowhere:x:y']}, qr/cannot parse listen address/],
  ) {
    my ($opt, $re) = @$case;
    ok(!eval { PAGI::Server::Config->new($opt); 1 }, join(' ', %$opt{grep { $_ ne 'app' } keys %$opt}) . ' croaks');
    like($@, $re, '... ' . ($re =~ s/\(\?\^:(.*)\)/$1/r));
  }
};

subtest 'listen specs' => sub {
  my $app = sub { };
  my $specs = PAGI::Server::Config->new({app => $app})->[LISTEN_SPECS];
  is_deeply([map { [$_->{host}, $_->{port}] } @$specs], [['127.0.0.1', 5000]], 'default: host and port');
  $specs = PAGI::Server::Config->new({app => $app, listen => ['[::1]:81', '8080', 'unix:/tmp/x.sock', 'name'],
    socket_mode => '0660'})->[LISTEN_SPECS];
  is_deeply([map { $_->{path} // "$_->{host} $_->{port}" } @$specs], ['::1 81', '127.0.0.1 8080', '/tmp/x.sock', 'name'],
    'IPv6, a bare port, unix: and a bare name (not host/port when not given)');
  is($specs->[2]{mode}, 0660, 'socket_mode applies to Unix sockets');
  $specs = PAGI::Server::Config->new({app => $app, port => 0, socket => '/tmp/y.sock'})->[LISTEN_SPECS];
  is(scalar @$specs, 2, 'host/port given with a socket: both');
};

done_testing;
