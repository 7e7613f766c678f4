package PAGI::Server::Runner;
use strict;
use warnings;
use experimental 'signatures';
use Getopt::Long ();
use File::Spec ();
use POSIX ();
use PAGI::Server::Handoff;    # (at compile time: it reads how this process was started)
use PAGI::Server::Config ();

our $VERSION = '0.001';

# What bin/pagi-server does: reads its command line (ours, and upstream
# PAGI::Server's: the README's "Coming from PAGI::Server" maps one to the other),
# resolves the mode (-E, PAGI_ENV, a terminal or not), prepares the process (@INC,
# -M modules, Future::IO on the server's loop), loads the application (a file, a
# module name with key=value arguments, or -e code), makes the server and runs it
# (optionally daemonized, with a pid file).

# Every option comes from PAGI::Server::Config's one table: a server option goes to
# PAGI::Server under its name, a runner one (its `runner` key) is handled here, a
# refused one (an upstream option this server does not have) is refused with the
# reason, never ignored. --help documents all of them (t/26).

# PAGI::Server::Runner->run(@ARGV): upstream's entry point; returns the exit status.
# Its steps (the methods below) die with a message, as upstream's do; run prints it
# and exits 2.
sub run ($class, @args) {
  my $self = ref $class ? $class : $class->new;
  my $status = eval { $self->_run(@args) };
  return $status if defined $status;
  my $err = $@;
  $err =~ s/\s+\z//;
  $err =~ s/\A(?:PAGI::Server(?:->new)?: )//;
  print STDERR "pagi-server: $err\n";
  return 2;
}

sub new ($class, %args) { bless {libs => [], modules => [], server_options => {}, %args}, $class }

# A command line that cannot be run: a message (run prints it, exit 2)
sub _usage_error ($msg) { die "$msg\n" }

sub _run ($self, @args) {
  $self->parse_options(@args);
  if ($self->{help}) { print usage(); return 0 }
  if ($self->{version}) { $self->_version; return 0 }

  # The mode is known to the application as PAGI_ENV (like Plack's PLACK_ENV)
  $ENV{PAGI_ENV} = $self->mode;
  # (a daemon runs in /: its -I directories are made absolute)
  unshift @INC, map { $self->{daemonize} ? File::Spec->rel2abs($_) : $_ } @{$self->{libs}};
  if (defined $self->{server_options}{loop_type}) {
    # A loop that is not installed: one line naming it and the loops that are
    require PAGI::Server;
    PAGI::Server::loop_class($self->{server_options}{loop_type});
  }
  $self->_configure_future_io;
  my $server = $self->load_server;
  # (the new server of a USR2 upgrade is already a daemon: its parent is the old one;
  # the command started returns the daemon's startup status)
  if ($self->{daemonize} && !$ENV{PAGI_SERVER_UPGRADE}) {
    my $started = $self->_daemonize;
    return $started if defined $started;
  }
  # PAGI::Server writes and removes the pid file itself (it follows a USR2 upgrade)
  $self->_write_pid_file if defined $self->{pid_file} && !$server->isa('PAGI::Server');
  my $status = $server->run;
  unlink $self->{pid_written} if $self->{pid_written} && $self->{pid_owner} == $$;
  return $status // 0;
}

sub parse_options ($self, @args) {
  # Upstream's server_options => {...} (from its bin/pagi-server) may follow
  for my $i (0 .. $#args - 1) {
    next unless !ref $args[$i] && $args[$i] eq 'server_options' && ref $args[$i + 1] eq 'HASH';
    my (undef, $extra) = splice @args, $i, 2;
    $self->{server_options} = {%{$self->{server_options}}, %$extra};
    last;
  }
  # -MModule, -Ilib, -e'code' written without a space, as perl takes them
  @args = map { /\A(-[IMe])(.+)\z/s ? ($1, $2) : $_ } @args;
  my (%runner, %server, @refused);
  my %spec;
  for my $o (PAGI::Server::Config::cli_options()) {
    my ($spec, $e) = @$o;
    if (my $why = $e->{refused}) {
      my ($name) = $spec =~ /\A([^=!]+)/;
      $spec{$spec} = sub { push @refused, "--$name is not supported: $why" };
      next;
    }
    my ($store, $key) = $e->{runner} ? (\%runner, $e->{runner}) : (\%server, $e->{name});
    if ($spec =~ /\@\z/) { $spec{$spec} = $store->{$key} = [] }
    elsif (my $from = $e->{from_cli}) { $spec{$spec} = sub ($opt, $value) { $store->{$key} = $from->($value) } }
    else { $spec{$spec} = sub ($opt, $value) { $store->{$key} = $value } }
  }
  my @bad;
  {
    local $SIG{__WARN__} = sub ($msg) { push @bad, $msg };
    my $p = Getopt::Long::Parser->new(config => [qw(no_ignore_case no_auto_abbrev permute)]);
    $p->getoptionsfromarray(\@args, %spec);
  }
  if (@bad) {
    my $msg = $bad[0] =~ s/\s+\z//r;
    if ($msg =~ /\AUnknown option: (.+)\z/) {
      my $name = $1;
      my ($best, $dist) = (undef, 1e9);
      for my $known (PAGI::Server::Config::cli_names()) {
        next if length $known == 1 && length $name > 2;
        my $d = PAGI::Server::Spelling::distance($name, $known);
        ($best, $dist) = ($known, $d) if $d < $dist;
      }
      my $flag = length $name == 1 ? "-$name" : "--$name";
      # (a single letter has no nearest one worth naming)
      my $hint = defined $best && length $name > 1 ? ' (did you mean ' . (length $best == 1 ? "-$best" : "--$best") . '?)' : '';
      _usage_error("unknown option $flag$hint; pagi-server --help lists every option");
    }
    _usage_error(lcfirst($msg) . '; pagi-server --help lists every option');
  }
  _usage_error($refused[0]) if @refused;
  for my $k (qw(libs modules)) { push @{$self->{$k}}, @{delete $runner{$k} || []} }
  delete $server{listen} unless @{$server{listen} || []};
  @$self{keys %runner} = values %runner;
  $self->{server_options} = {%{$self->{server_options}}, %server};
  $self->{argv} = \@args;
  return $self;
}

# development, production (or another word): -E, else PAGI_ENV, else development on
# a terminal and production without one (systemd, docker, cron)
sub mode ($self) {
  return $self->{env} if defined $self->{env};
  return $ENV{PAGI_ENV} if defined $ENV{PAGI_ENV} && length $ENV{PAGI_ENV};
  return -t STDIN ? 'development' : 'production';
}

# Future::IO (when installed) runs on IO::Async's loop, which is the server's:
# through Future::IO::Impl::IOAsync (IO::Async's own; Debian: libio-async-perl)
sub _configure_future_io ($self) {
  return unless eval { require Future::IO; 1 };
  no warnings 'once';
  return if defined $Future::IO::IMPL;
  $self->{future_io} = 'Future::IO::Impl::IOAsync' if eval { require Future::IO::Impl::IOAsync; 1 };
}

sub _backend ($self) {
  my $b = $self->{backend} // 'auto';
  _usage_error('--backend must be auto, xs or pp') unless $b =~ /\A(?:auto|xs|pp)\z/i;
  # The codec backend is chosen when PAGI::Server loads: set it first
  $ENV{PAGI_SERVER_BACKEND} = lc $b if lc $b ne 'auto';
}

sub _version ($self) {
  $self->_backend;
  require PAGI::Server;
  printf "pagi-server (PAGI::Server) %s, backend %s, perl %vd\n",
    $PAGI::Server::VERSION, PAGI::Server->backend, $^V;
}

# The application: -e CODE (after -I and -M), a module name (with key=value
# arguments), or a file; none at all is upstream's default, the current directory
# served by PAGI::App::Directory, when that is installed
sub load_app ($self) {
  my $plan = $self->_resolve_app;
  for my $m (@{$self->{modules}}) {
    my ($module, $imports) = split /=/, $m, 2;
    (my $file = "$module.pm") =~ s{::}{/}g;
    eval { require $file; 1 } or die "Cannot load module $module (-M): " . ($@ =~ s/\s+\z//r) . "\n";
    $module->import(defined $imports ? split(/,/, $imports) : ());
  }
  if ($plan->{eval}) {
    my $app = eval "package main; no strict; $self->{eval}";
    die "Error evaluating -e code: $@" if $@;
    die '-e code must return a coderef (the application), got ' . (ref $app || 'non-reference') . "\n"
      unless ref $app eq 'CODE';
    return $self->{app} = $app;
  }
  return $self->{app} = _load_module($plan->{module}, %{$plan->{args}}) if $plan->{module};
  return if $self->{no_preload};
  return $self->{app} = PAGI::Server->load_app($plan->{file});
}

# What the application is, without loading it: -e code, a module (with key=value
# arguments) or a file (app_file; a PSGI one sets the psgi option). Checked once.
sub _resolve_app ($self) {
  return $self->{plan} if $self->{plan};
  $self->_backend;
  require PAGI::Server;
  for my $m (@{$self->{modules}}) {
    my ($module) = split /=/, $m, 2;
    $module =~ /\A\w+(?:::\w+)*\z/ or _usage_error("-M: '$module' is not a module name");
  }
  my @argv = @{$self->{argv} || []};
  if (defined $self->{eval}) {
    $self->_no_args(@argv);
    $self->{app_spec} = '-e';
    return $self->{plan} = {eval => 1};
  }
  _usage_error('--psgi and --app name two applications; give one') if defined $self->{psgi} && defined $self->{app};
  my $spec = $self->{app} // $self->{psgi};
  $spec //= shift @argv if @argv && $argv[0] !~ /=/;
  my %args;
  for (@argv) {
    /\A([^=]+)=(.*)\z/s or _usage_error("unexpected argument '$_' (after the application, only key=value)");
    $args{$1} = $2;
  }
  if (!defined $spec) {
    if (!eval { require PAGI::App::Directory; 1 }) {
      _usage_error('no application file given (without one, upstream serves the current directory '
        . 'with PAGI::App::Directory, which is not installed); pagi-server --help');
    }
    ($spec, %args) = ('PAGI::App::Directory', root => '.');
  }
  $self->{app_spec} = $spec;
  my $module = $spec =~ /::/ || ($spec !~ m{/} && $spec !~ /\.(?:pl|psgi)\z/i && !-e $spec);
  if ($module) {
    $self->{app_file} = undef;
    return $self->{plan} = {module => $spec, args => \%args};
  }
  _usage_error("key=value arguments go to a module application, not to the file '$spec'") if %args;
  $self->{app_file} = $spec;
  if (defined $self->{psgi} || $spec =~ /\.psgi\z/i) {
    # A PSGI application (PSGI's environment says its mode, as plackup's does)
    $self->{server_options}{psgi} = 1;
    $ENV{PLACK_ENV} //= $self->mode;
  }
  return $self->{plan} = {file => $spec};
}

sub _no_args ($self, @argv) {
  _usage_error("unexpected argument '$argv[0]' (the application is the -e code)") if @argv;
}

sub _load_module ($module, %args) {
  $module =~ /\A[A-Za-z_]\w*(?:::\w+)*\z/ or _usage_error("'$module' is neither a file nor a module name");
  (my $file = "$module.pm") =~ s{::}{/}g;
  if (!eval { require $file; 1 }) {
    my $err = $@;
    die "Cannot find module '$module' (the application): it is not installed (\@INC: @INC)\n"
      if $err =~ /\ACan't locate \Q$file\E in \@INC/;
    die "Cannot load module '$module' (the application): $err";
  }
  die "the application module $module has no new and to_app methods\n"
    unless $module->can('new') && $module->can('to_app');
  # (_caller_file: upstream's runner tells PAGI::App modules where they live)
  my $app = $module->new(%args, _caller_file => $INC{$file})->to_app;
  die "$module->to_app did not return a code reference\n" unless ref $app eq 'CODE';
  return $app;
}

# The app, wrapped as the mode asks: in development, PAGI::Middleware::Lint (strict)
# when PAGI-Tools is installed, unless --no-default-middleware
sub prepare_app ($self) {
  $self->{no_preload} = 1 if defined $self->{preload} && !$self->{preload} && $self->{server_options}{workers};
  my $app = $self->load_app;
  return $app unless $app;
  if ($self->{server_options}{psgi}) {
    # A PSGI application in development: Plack's Lint and StackTrace, as plackup does
    if (($self->{default_middleware} // 1) && $self->mode eq 'development'
      && eval { require Plack::Middleware::Lint; require Plack::Middleware::StackTrace; 1 }) {
      $app = $self->{app} = Plack::Middleware::StackTrace->wrap(Plack::Middleware::Lint->wrap($app));
      $self->{lint} = 'Plack::Middleware::Lint and StackTrace';
    }
    return $app;
  }
  if (($self->{default_middleware} // 1) && $self->mode eq 'development'
    && eval { require PAGI::Middleware::Lint; 1 }) {
    $app = $self->{app} = PAGI::Middleware::Lint->new(strict => 1)->wrap($app);
    $self->{lint} = 1;
  }
  return $app;
}

# The server, made from the command line's options
sub load_server ($self) {
  my $class = $self->{server} // 'PAGI::Server';
  # --user/--group: the application is loaded once the sockets are bound and the
  # privileges dropped (app_loader), never as root
  my $later = $class eq 'PAGI::Server'
    && (defined $self->{server_options}{user} || defined $self->{server_options}{group});
  my $app;
  if ($later) {
    $self->{no_preload} = 1 if defined $self->{preload} && !$self->{preload} && $self->{server_options}{workers};
    $self->_resolve_app;
  }
  else { $app = $self->prepare_app }
  my %o = %{$self->{server_options}};
  if ($self->{no_preload}) {
    _usage_error('--no-preload needs an application file (each worker loads it)') unless defined $self->{app_file};
    $o{app_file} = $self->{app_file};
  }
  elsif ($later) {
    $o{app_loader} = sub {
      my $loaded = $self->prepare_app;
      $self->_log_mode($self->{made});
      return $loaded;
    };
  }
  else { $o{app} = $app }
  # The access log: --no-access-log, --access-log FILE ('-': stderr), else stderr in
  # development and none in production (upstream: logging costs throughput)
  if ($self->{no_access_log}) { $o{access_log} = undef }
  elsif (defined $self->{access_log}) {
    $o{access_log} = $self->{access_log} eq '-' ? \*STDERR : File::Spec->rel2abs($self->{access_log});
  }
  elsif ($self->mode eq 'production') { $o{access_log} = undef }
  $o{env} = $self->mode;
  if ($self->{daemonize}) {
    # The daemon runs in /: paths given relative to here are made absolute
    $o{socket} = File::Spec->rel2abs($o{socket}) if defined $o{socket};
    $o{listen} = [map { m{\A(unix:)?([.][^:]*|[^:]*/[^:]*)\z} ? ($1 // '') . File::Spec->rel2abs($2) : $_ }
      @{$o{listen}}] if $o{listen};
    $o{app_file} = File::Spec->rel2abs($o{app_file}) if defined $o{app_file};
    $self->{plan}{file} = File::Spec->rel2abs($self->{plan}{file}) if $self->{plan} && defined $self->{plan}{file};
    $self->{pid_file} = File::Spec->rel2abs($self->{pid_file}) if defined $self->{pid_file};
  }
  if ($class ne 'PAGI::Server') {
    # Another server, through the PAGI runner contract: new(%options)->run
    my @ours = grep { !/\A(?:app|host|port|quiet|access_log|loop_type|env)\z/ } sort keys %o;
    _usage_error("--server $class takes only the runner contract's options (host, port, quiet, "
      . "access log, loop), not: @ours") if @ours;
    (my $file = "$class.pm") =~ s{::}{/}g;
    eval { require $file; 1 } or die "cannot load the server class $class: " . ($@ =~ s/\s+\z//r) . "\n";
    delete $o{env};
    $o{host} //= '127.0.0.1';
    $o{port} //= 5000;
    return $class->new(%o);
  }
  if ($self->{daemonize}) {
    pipe(my $r, my $w) or die "pipe: $!\n";
    @$self{qw(ready_r ready_w)} = ($r, $w);
    my $on_listen = $o{on_listen};
    $o{on_listen} = sub ($server) {
      $self->_ready;
      $on_listen->($server) if $on_listen;
    };
  }
  $o{pid_file} = $self->{pid_file} if defined $self->{pid_file};
  my $server = $self->{made} = PAGI::Server->new(%o);
  $self->_log_mode($server) unless $o{app_loader};
  return $server;
}

sub _log_mode ($self, $server) {
  $server->log(info => 'mode ' . $server->option('env') . ($server->option('psgi') ? ', a PSGI application' : '')
    . ($self->{lint} ? ', ' . ($self->{lint} eq '1' ? 'PAGI::Middleware::Lint (strict)' : $self->{lint}) : '')
    . ($self->{future_io} ? ", Future::IO on the server's loop ($self->{future_io})" : ''));
}

# -D: the daemon forks twice and leaves the terminal; the first process waits until
# the daemon listens (exit 0) or gives up (exit 1), so that startup errors (an
# address in use) are seen where it was started
sub _daemonize ($self) {
  my ($r, $w) = @$self{qw(ready_r ready_w)};
  my $started = $$;
  my $pid = fork // die "fork: $!\n";
  if ($pid) {
    close $w;
    my $got = <$r> // '';
    waitpid($pid, 0);
    return $got eq "ready\n" ? 0 : 1;
  }
  close $r;
  POSIX::setsid() or die "setsid: $!\n";
  $pid = fork // die "fork: $!\n";
  POSIX::_exit(0) if $pid;
  # Sockets systemd passed to the process it started are the daemon's now
  $ENV{LISTEN_PID} = $$ if ($ENV{LISTEN_PID} // '') eq $started;
  chdir '/' or die "chdir /: $!\n";
  open(STDIN, '<', File::Spec->devnull) or die "stdin: $!\n";
  open(STDOUT, '>', File::Spec->devnull) or die "stdout: $!\n";
  # stderr stays until the server listens, so that startup errors reach the terminal
  return undef;
}

sub _ready ($self) {
  # (the pid file is PAGI::Server's: written once bound, and by the new server of an
  # upgrade only once it serves)
  my $w = delete $self->{ready_w} or return;
  syswrite $w, "ready\n";
  close $w;
  open(STDERR, '>', File::Spec->devnull);
}

sub _write_pid_file ($self) {
  return if $self->{pid_written};
  my $file = $self->{pid_file};
  open(my $fh, '>', $file) or die "cannot write the pid file $file: $!\n";
  print {$fh} "$$\n";
  close $fh or die "cannot write the pid file $file: $!\n";
  @$self{qw(pid_written pid_owner)} = ($file, $$);
}

# The --help sections of the options, made from the one table (PAGI::Server::Config)
sub _usage_options {
  my $text = '';
  my %in;
  push @{$in{$_->{group}}}, $_ for grep { $_->{cli} && $_->{help} } @PAGI::Server::Config::TABLE;
  my @groups = @PAGI::Server::Config::GROUPS;
  for (my $i = 0; $i < @groups; $i += 2) {
    my ($group, $title) = @groups[$i, $i + 1];
    $text .= "$title\n" if length $title;
    $text .= _usage_line($_) for @{$in{$group} || []};
    $text .= "\n";
  }
  return $text;
}

use constant {HELP_INDENT => 29, HELP_WIDTH => 80};

sub _usage_line ($o) {
  my $left = $o->{flag};
  if (!defined $left) {
    my ($names) = $o->{cli} =~ /\A([^=:!+@]+)/;
    $left = join ', ', map { length == 1 ? "-$_" : "--$_" } split /\|/, $names;
    $left .= " $o->{arg}" if $o->{arg};
  }
  my $help = $o->{help};
  my $shown = $o->{shown} // (defined $o->{default} && !ref $o->{default} && $o->{type} ne 'bool' ? $o->{default} : '');
  $help .= " ($shown)" if length $shown;
  # (long-only options line up after the short ones' column)
  my $line = ($left =~ /\A-[^-]/ ? '  ' : '      ') . $left;
  my @words = split / /, $help;
  $line .= length $line < HELP_INDENT - 1 ? ' ' x (HELP_INDENT - length $line) : "\n" . ' ' x HELP_INDENT;
  my $col = HELP_INDENT;
  my $out = '';
  my $first = 1;
  for my $w (@words) {
    if (!$first && $col + 1 + length $w > HELP_WIDTH) {
      $out .= $line . "\n";
      $line = ' ' x HELP_INDENT;
      $col = HELP_INDENT;
      $first = 1;
    }
    $line .= ($first ? '' : ' ') . $w;
    $col += ($first ? 0 : 1) + length $w;
    $first = 0;
  }
  return $out . $line . "\n";
}

sub usage {
  return <<'USAGE' . _usage_options() . <<'SIGNALS';
Usage: pagi-server [OPTIONS] [APP] [key=value ...]

APP is a Perl file whose last statement is the PAGI application (a code
reference), or a module name (with ::) whose new(key => value, ...)->to_app
returns it. A file ending in .psgi is a PSGI application (Plack, Dancer2,
Catalyst, ...). Options may come before or after it.

USAGE
Signals:
  TERM, INT    graceful stop: stop accepting, finish in-flight requests (within
               --shutdown-timeout), run lifespan shutdown, exit 0; a second one
               closes the remaining connections at once
  HUP          (--workers) graceful restart: new workers first, then the old ones
               retire, so no request is refused; with --no-preload the new
               workers load the application anew (a new one that fails to start
               leaves the old ones serving)
  TTIN, TTOU   (--workers) one worker more / one fewer
  USR1         reopen the --access-log file (after log rotation); with --workers,
               every worker does
  USR2         upgrade: start this command line again (new Perl, modules, server
               and application code) on the same listening sockets; once it
               serves, this one retires (finishes its requests, exits 0) and the
               --pid file names the new one; if it fails, this one serves on.
               The same with or without --workers

Environment: PAGI_ENV (see -E), PAGI_SERVER_BACKEND=xs|pp|auto (see --backend),
IO_ASYNC_LOOP (IO::Async's default loop); LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES
(systemd socket activation: serve the sockets passed instead of binding),
NOTIFY_SOCKET (systemd Type=notify: READY=1 once serving, MAINPID= after USR2),
FORWARDED_ALLOW_IPS (see --forwarded-allow-ips).
The open-file limit is raised to the hard limit at start (BSD::Resource).
SIGNALS
}

1;

=head1 NAME

PAGI::Server::Runner - the command line of pagi-server

=head1 SYNOPSIS

  use PAGI::Server::Runner;
  exit PAGI::Server::Runner->run(@ARGV);

=head1 DESCRIPTION

What C<bin/pagi-server> runs; C<pagi-server --help> lists the options. It takes
upstream PAGI::Server's command line as well as its own (the README's "Coming from
PAGI::Server" has the table), and prepares the process as upstream's runner does:

=over

=item * the mode: C<-E>, else C<PAGI_ENV>, else C<development> on a terminal and
C<production> without one; it is exported as C<PAGI_ENV> and given to the server
(see L<PAGI::Server/env>);

=item * C<-I> directories and C<-M> modules before the application loads;

=item * L<Future::IO>, when installed, on the server's IO::Async loop (through
Future::IO::Impl::IOAsync, which comes with IO::Async);

=item * the application file loaded with C<$0> and C<@ARGV> naming it and
C<FindBin> refreshed (L<PAGI::Server/load_app>), a module application made with
C<< Module->new(key => value, ...)->to_app >>, or C<-e> code.

=back

=head1 METHODS

C<run(@args)> (class or object method) returns the exit status (0; 2 for a command
line that cannot run, printed as one C<pagi-server: ...> line; the server's own,
C<< PAGI::Server->run >>'s, once it runs). C<new>, C<parse_options(@args)>, C<mode>,
C<load_app>, C<prepare_app> and C<load_server> are its steps, named as upstream's
runner names them; each dies with a message when it cannot go on (C<Cannot find
module 'Name'>, C<-e code must return a coderef>, as upstream words them).

=cut
