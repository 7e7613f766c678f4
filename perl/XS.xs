/*
 * PAGI::Server::Protocol::HTTP1::XS - Perl glue for the Rust codec core, and
 * PAGI::Server::Protocol::WebSocket::XS and PAGI::Server::Protocol::HTTP2::XS (more
 * packages of the same object).
 *
 * This file only converts values: Perl scalars in, the C ABI of src/ffi.rs
 * (perl/pagi_server.h) across, Perl values out. Every rule of the protocol lives in
 * Rust; the results must be identical to PAGI::Server::Protocol::HTTP1::PP and
 * PAGI::Server::Protocol::WebSocket::PP (doc/codec.md, t/30-codec-differential.t,
 * t/32-ws-differential.t).
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include "pagi_server.h"

#define PKG "PAGI::Server::Protocol::HTTP1::XS"
#define WS_PKG "PAGI::Server::Protocol::WebSocket::XS"
#define H2_PKG "PAGI::Server::Protocol::HTTP2::XS"
#define H2_SESSION "PAGI::Server::Protocol::HTTP2::XS::Session"
#define WS_DEFLATE "PAGI::Server::Protocol::WebSocket::XS::Deflate"

/* Header lists up to this size need no heap allocation */
#define STACK_FIELDS 32

/* The result hash keys */
enum {
    K_METHOD, K_PATH, K_RAW_PATH, K_QUERY_STRING, K_HTTP_VERSION, K_HEADERS,
    K_CONTENT_LENGTH, K_CHUNKED, K_CLOSE, K_UPGRADE, K_WS_KEY, K_WS_VERSION,
    K_SSE, K_EXPECT_CONTINUE, K_ERROR, K_MESSAGE, K_SCHEME, K_PROTOCOL, K_COUNT
};
static const char *const key_name[K_COUNT] = {
    "method", "path", "raw_path", "query_string", "http_version", "headers",
    "content_length", "chunked", "close", "upgrade", "ws_key", "ws_version",
    "sse", "expect_continue", "error", "message", "scheme", "protocol"
};

/* HTTP/2 event names, by PAGI_H2_EV_* */
#define H2_EVENTS 8
static const char *const h2_event_name[H2_EVENTS] = {
    "", "request", "data", "trailers", "reset", "closed", "goaway", "error"
};
/* Buckets for a result hash: the connection adds the other scope keys to it (about 17
   in all), so it is sized once for that instead of growing twice */
#define RESULT_KEYS 24

/* Room for the known strings of src/known.rs (ids 1..KNOWN_MAX) */
#define KNOWN_MAX 127

/* Per interpreter: shared (copy-on-write) strings made once, so that a result's keys,
 * its known header names and methods and its most common values cost no allocation */
#define MY_CXT_KEY "PAGI::Server::Protocol::HTTP1::XS::_guts" XS_VERSION
typedef struct {
    SV *key[K_COUNT];
    SV *known[KNOWN_MAX + 1];
    SV *empty, *slash, *v11, *v10, *v2;
    SV *h2_event[H2_EVENTS];
} my_cxt_t;
START_MY_CXT

static void
init_cache(pTHX_ my_cxt_t *cx)
{
    int k;
    U32 id;
    for (k = 0; k < K_COUNT; k++)
        cx->key[k] = newSVpvn_share(key_name[k], (I32)strlen(key_name[k]), 0);
    for (id = 0; id <= KNOWN_MAX; id++) {
        size_t len = 0;
        const unsigned char *p = id ? pagi_known_string(id, &len) : NULL;
        cx->known[id] = p ? newSVpvn_share((const char *)p, (I32)len, 0) : NULL;
    }
    cx->empty = newSVpvn_share("", 0, 0);
    cx->slash = newSVpvn_share("/", 1, 0);
    cx->v11 = newSVpvn_share("1.1", 3, 0);
    cx->v10 = newSVpvn_share("1.0", 3, 0);
    cx->v2 = newSVpvn_share("2", 1, 0);
    for (k = 0; k < H2_EVENTS; k++)
        cx->h2_event[k] = newSVpvn_share(h2_event_name[k], (I32)strlen(h2_event_name[k]), 0);
}

#define STORE(hv, k, sv) (void)hv_store_ent((hv), cx->key[k], (sv), 0)

/* A copy of a cached shared string: shares its buffer (newSVhek is cheaper than the
 * general newSVsv) */
#define SHARED_COPY(sv) newSVhek(SvSHARED_HEK_FROM_PV(SvPVX_const(sv)))

/* A span as a new SV: undef for a NULL pointer; "" and "/" as shared copies */
static SV *
span_sv(pTHX_ const my_cxt_t *cx, pagi_span s)
{
    if (!s.ptr)
        return newSV(0);
    if (s.len == 0)
        return SHARED_COPY(cx->empty);
    if (s.len == 1 && s.ptr[0] == '/')
        return SHARED_COPY(cx->slash);
    return newSVpvn((const char *)s.ptr, s.len);
}

/* A known string (header name, method) as a shared copy, else from its span */
static SV *
known_sv(pTHX_ const my_cxt_t *cx, U32 id, pagi_span s)
{
    if (id && id <= KNOWN_MAX && cx->known[id])
        return SHARED_COPY(cx->known[id]);
    return span_sv(aTHX_ cx, s);
}

/* A new array with room for `n` (> 0) elements, filled by the caller (AvARRAY, then
 * AvFILLp) */
static AV *
sized_av(pTHX_ SSize_t n)
{
#ifdef newAV_alloc_x
    return newAV_alloc_x(n);          /* 5.36+: one allocation, no growth policy */
#else
    AV *av = newAV();
    av_extend(av, n - 1);
    return av;
#endif
}

/* A Rust panic was caught in function `fn` of package `pkg`: croak with its message */
static void
croak_panic(pTHX_ const char *pkg, const char *fn)
{
    size_t n = 0;
    const unsigned char *m = pagi_last_panic(&n);
    croak("%s::%s: internal error in the Rust codec (%.*s); please report this bug",
          pkg, fn, (int)n, m ? (const char *)m : "panic");
}

/* {error => KIND, message => TEXT} for error `code` of `table` (PAGI_TABLE_HTTP,
 * PAGI_TABLE_WS), from the Rust tables */
static SV *
error_ref(pTHX_ const my_cxt_t *cx, int table, int code)
{
    HV *hv = newHV();
    const char *kind = "internal", *message = "internal error";
    (void)pagi_error_info(table, code, &kind, &message);
    STORE(hv, K_ERROR, newSVpv(kind, 0));
    STORE(hv, K_MESSAGE, newSVpv(message, 0));
    return newRV_noinc((SV *)hv);
}

/* THE conversion of a Perl value to bytes (get-magic already called): undef is "" with
 * *defined cleared, a character string is downgraded (a mortal copy); NULL when it has a
 * character above 0xFF */
static const char *
sv_bytes(pTHX_ SV *sv, STRLEN *len, int *defined)
{
    const char *p;
    *defined = sv && SvOK(sv);
    if (!*defined) {
        *len = 0;
        return "";
    }
    p = SvPV_nomg_const(sv, *len);
    if (SvUTF8(sv)) {
        SV *tmp = sv_2mortal(newSVpvn(p, *len));
        SvUTF8_on(tmp);
        if (!sv_utf8_downgrade(tmp, TRUE))
            return NULL;
        p = SvPV_const(tmp, *len);
    }
    return p;
}

/* sv_bytes for an argument that must be bytes: a character above 0xFF is API misuse,
 * croaked as "PKG::fn: WHAT must be bytes, ..." */
static const char *
arg_bytes(pTHX_ SV *sv, STRLEN *len, int *defined, const char *pkg, const char *fn,
          const char *what)
{
    const char *p;
    SvGETMAGIC(sv);
    p = sv_bytes(aTHX_ sv, len, defined);
    if (!p)
        croak("%s::%s: %s must be bytes, not a string with characters over 0xFF", pkg, fn,
              what);
    return p;
}

/* A header name or value the application gives: undef is "", and a character above
 * 0xFF sets *wide (the Rust validator reports it as the app's error) */
static const char *
app_bytes(pTHX_ SV *sv, STRLEN *len, int *wide)
{
    int defined;
    const char *p;
    if (sv)
        SvGETMAGIC(sv);
    p = sv_bytes(aTHX_ sv, len, &defined);
    *wide = !p;
    return p ? p : SvPV_nomg_const(sv, *len);
}

/* Converts [[name, value], ...] for the Rust serializers. Returns the count of pairs
 * converted; *fields points to `stack` or to a mortal heap block; names[2i] and
 * names[2i + 1] keep each name and value SV for the error messages. A malformed list
 * stops the conversion and sets *misuse: the caller croaks with it unless Rust finds
 * an app error first, which is the order in which the PP code meets them. */
static size_t
collect_fields(pTHX_ SV *headers, pagi_field_in *stack, pagi_field_in **fields,
               SV ***names, SV **stack_names, SV **misuse, const char *fn)
{
    AV *av;
    SSize_t i, n;
    *fields = stack;
    *names = stack_names;
    *misuse = NULL;
    SvGETMAGIC(headers);
    if (!SvOK(headers))
        return 0;
    if (!SvROK(headers) || SvTYPE(SvRV(headers)) != SVt_PVAV) {
        *misuse = sv_2mortal(newSVpvf("%s::%s: headers must be an array reference of"
                                      " [name, value] pairs", PKG, fn));
        return 0;
    }
    av = (AV *)SvRV(headers);
    n = av_top_index(av) + 1;
    if (n > STACK_FIELDS) {
        pagi_field_in *heap;
        SV **heap_names;
        Newx(heap, n, pagi_field_in);
        SAVEFREEPV(heap);
        Newx(heap_names, 2 * n, SV *);
        SAVEFREEPV(heap_names);
        *fields = heap;
        *names = heap_names;
    }
    for (i = 0; i < n; i++) {
        SV **elem = av_fetch(av, i, 0);
        SV *pair = elem ? *elem : NULL;
        AV *pav;
        SV **name, **value;
        STRLEN nl, vl;
        int nw, vw;
        if (pair)
            SvGETMAGIC(pair);
        if (!pair || !SvROK(pair) || SvTYPE(SvRV(pair)) != SVt_PVAV) {
            *misuse = sv_2mortal(newSVpvf("%s::%s: header %ld is not a [name, value] array"
                                          " reference", PKG, fn, (long)i));
            return (size_t)i;
        }
        pav = (AV *)SvRV(pair);
        name = av_fetch(pav, 0, 0);
        value = av_fetch(pav, 1, 0);
        (*names)[2 * i] = name ? *name : NULL;
        (*names)[2 * i + 1] = value ? *value : NULL;
        (*fields)[i].name = (const unsigned char *)app_bytes(aTHX_ name ? *name : NULL, &nl, &nw);
        (*fields)[i].name_len = nl;
        (*fields)[i].value = (const unsigned char *)app_bytes(aTHX_ value ? *value : NULL, &vl, &vw);
        (*fields)[i].value_len = vl;
        (*fields)[i].wide = (nw ? PAGI_WIDE_NAME : 0) | (vw ? PAGI_WIDE_VALUE : 0);
    }
    return (size_t)n;
}

/* check_headers' shape rule: undef (no headers), or an array reference whose
 * elements are all array references of exactly two elements (else PAGI_BAD_SHAPE) */
static int
headers_shape_ok(pTHX_ SV *headers)
{
    AV *av;
    SSize_t i, n;
    SvGETMAGIC(headers);
    if (!SvOK(headers))
        return 1;
    if (!SvROK(headers) || SvTYPE(SvRV(headers)) != SVt_PVAV)
        return 0;
    av = (AV *)SvRV(headers);
    n = av_top_index(av) + 1;
    for (i = 0; i < n; i++) {
        SV **elem = av_fetch(av, i, 0);
        if (!elem)
            return 0;
        SvGETMAGIC(*elem);
        if (!SvROK(*elem) || SvTYPE(SvRV(*elem)) != SVt_PVAV
            || av_top_index((AV *)SvRV(*elem)) != 1)
            return 0;
    }
    return 1;
}

/* The message of an app row of the error table (PAGI_BAD_*, PAGI_H2_*): its text, with
 * the name (or the content-length value) exactly as given in place of its %s */
static SV *
app_message(pTHX_ int code, SV *given)
{
    const char *message = NULL, *hole;
    SV *msg;
    (void)pagi_error_info(PAGI_TABLE_APP, code, NULL, &message);
    if (!message)
        message = "invalid response";
    hole = strstr(message, "%s");
    if (!hole)
        return newSVpv(message, 0);
    msg = newSVpvn(message, hole - message);
    if (given && SvOK(given))
        sv_catsv(msg, given);
    sv_catpv(msg, hole + 2);
    return msg;
}

/* The message for an invalid status or header (or an HTTP/2 stream state) */
static SV *
app_error_message(pTHX_ const pagi_response *r, SV **names)
{
    SV *given = NULL;
    if (r->error == PAGI_BAD_LENGTH)
        given = names[2 * r->error_index + 1];
    else if (r->error == PAGI_BAD_NAME || r->error == PAGI_BAD_VALUE)
        given = names[2 * r->error_index];
    return app_message(aTHX_ r->error, given);
}

/* Pushes [kind, message, number] for each code of one Rust error table, in code order:
 * the tests compare it with PAGI::Server::Protocol::Errors */
static void
push_error_table(pTHX_ int table)
{
    dSP;
    int code, number;
    const char *kind, *message;
    for (code = 1; (number = pagi_error_info(table, code, &kind, &message)); code++) {
        AV *row = newAV();
        av_push(row, newSVpv(kind, 0));
        av_push(row, newSVpv(message, 0));
        av_push(row, newSViv(number));
        XPUSHs(sv_2mortal(newRV_noinc((SV *)row)));
    }
    PUTBACK;
}

/* head bytes, then (when b is not NULL) the body bytes */
static SV *
head_and_body(pTHX_ const pagi_response *r, const char *b, STRLEN blen)
{
    SV *out;
    if (!b)
        blen = 0;
    out = newSV(r->head_len + blen + 1);
    SvPOK_on(out);
    Copy(r->head, SvPVX(out), r->head_len, char);
    if (blen)
        Copy(b, SvPVX(out) + r->head_len, blen, char);
    SvCUR_set(out, r->head_len + blen);
    *SvEND(out) = '\0';
    return out;
}

static SV *
endpoint_host(pTHX_ const pagi_endpoint *e)
{
    return newSVpvn(e->len ? (const char *)e->text : "", e->len);
}

/* A Perl handle for a socket descriptor: an anonymous glob whose IO has the :unix
 * layer alone, for sysread, syswrite, send/recv, setsockopt and close. (Perl's own
 * accept and open "&=" push a buffering layer too, whose set-up probes the descriptor:
 * an ioctl(TCGETS) and an lseek for each of the input and output handles, four system
 * calls a connection for a buffer never used.) NULL when PerlIO cannot take it. */
static SV *
socket_handle(pTHX_ int fd)
{
    PerlIO *fp = PerlIO_openn(aTHX_ ":unix", "r+", fd, 0, 0, NULL, 0, NULL);
    GV *gv;
    IO *io;
    if (!fp)
        return NULL;
    gv = MUTABLE_GV(newSV(0));
    gv_init_pvn(gv, PL_defstash, "__ANONIO__", 10, 0);
    io = GvIOn(gv);
    IoTYPE(io) = IoTYPE_SOCKET;
    IoIFP(io) = fp;
    IoOFP(io) = fp;
    return newRV_noinc(MUTABLE_SV(gv));
}

/* ---- HTTP/2 ---------------------------------------------------------------------- */

/* [[name, value], ...] of n fields */
static SV *
fields_av(pTHX_ const my_cxt_t *cx, const pagi_field *f, size_t n)
{
    AV *av = n ? sized_av(aTHX_ (SSize_t)n) : newAV();
    size_t i;
    for (i = 0; i < n; i++) {
        AV *pair = sized_av(aTHX_ 2);
        AvARRAY(pair)[0] = known_sv(aTHX_ cx, f[i].name_id, f[i].name);
        AvARRAY(pair)[1] = span_sv(aTHX_ cx, f[i].value);
        AvFILLp(pair) = 1;
        AvARRAY(av)[i] = newRV_noinc((SV *)pair);
    }
    if (n)
        AvFILLp(av) = (SSize_t)n - 1;
    return newRV_noinc((SV *)av);
}

/* A request event's hash, shaped as parse_request's result (doc/codec.md) */
static SV *
h2_request(pTHX_ const my_cxt_t *cx, const pagi_h2_event *e)
{
    HV *hv;
    SV *path;
    if (e->code)
        return error_ref(aTHX_ cx, PAGI_TABLE_H2REQ, (int)e->code);
    hv = newHV();
    hv_ksplit(hv, RESULT_KEYS);
    path = span_sv(aTHX_ cx, e->path);
    if (e->path_utf8)
        SvUTF8_on(path);    /* well-formed UTF-8, checked by Rust */
    STORE(hv, K_METHOD, span_sv(aTHX_ cx, e->method));
    STORE(hv, K_PATH, path);
    STORE(hv, K_RAW_PATH, span_sv(aTHX_ cx, e->raw_path));
    STORE(hv, K_QUERY_STRING, span_sv(aTHX_ cx, e->query_string));
    STORE(hv, K_HTTP_VERSION, SHARED_COPY(cx->v2));
    STORE(hv, K_HEADERS, fields_av(aTHX_ cx, e->fields, e->n_fields));
    STORE(hv, K_SCHEME, span_sv(aTHX_ cx, e->scheme));
    if (e->content_length >= 0)
        STORE(hv, K_CONTENT_LENGTH, newSViv((IV)e->content_length));
    if (e->sse)
        STORE(hv, K_SSE, newSViv(1));
    if (e->expect_continue)
        STORE(hv, K_EXPECT_CONTINUE, newSViv(1));
    if (e->protocol.ptr)
        STORE(hv, K_PROTOCOL, span_sv(aTHX_ cx, e->protocol));
    return newRV_noinc((SV *)hv);
}

/* The events as [[name, ...], ...] */
static SV *
h2_events(pTHX_ const my_cxt_t *cx, const pagi_h2_event *ev, size_t n)
{
    AV *list = n ? sized_av(aTHX_ (SSize_t)n) : newAV();
    size_t i;
    for (i = 0; i < n; i++) {
        const pagi_h2_event *e = &ev[i];
        AV *item = sized_av(aTHX_ 4);
        SSize_t last = 2;
        AvARRAY(item)[0] = SHARED_COPY(cx->h2_event[e->kind > 0 && e->kind < H2_EVENTS ? e->kind : 0]);
        AvARRAY(item)[1] = newSViv(e->stream_id);
        switch (e->kind) {
        case PAGI_H2_EV_REQUEST:
            AvARRAY(item)[2] = h2_request(aTHX_ cx, e);
            AvARRAY(item)[3] = newSViv(e->end_stream);
            last = 3;
            break;
        case PAGI_H2_EV_DATA:
            AvARRAY(item)[2] = newSVpvn(e->data.len ? (const char *)e->data.ptr : "", e->data.len);
            AvARRAY(item)[3] = newSViv(e->end_stream);
            last = 3;
            break;
        case PAGI_H2_EV_TRAILERS:
            AvARRAY(item)[2] = fields_av(aTHX_ cx, e->fields, e->n_fields);
            break;
        case PAGI_H2_EV_ERROR:
            AvARRAY(item)[2] = error_ref(aTHX_ cx, PAGI_TABLE_H2, (int)e->code);
            break;
        case PAGI_H2_EV_CLOSED:
            last = 1;
            break;
        default:            /* reset, goaway */
            AvARRAY(item)[2] = newSVuv(e->code);
            break;
        }
        AvFILLp(item) = last;
        AvARRAY(list)[i] = newRV_noinc((SV *)item);
    }
    if (n)
        AvFILLp(list) = (SSize_t)n - 1;
    return newRV_noinc((SV *)list);
}

/* The session behind $self (a reference to the handle's address), croaking on misuse */
static pagi_h2 *
h2_self(pTHX_ SV *self, const char *fn)
{
    pagi_h2 *h;
    if (!SvROK(self) || !sv_derived_from(self, H2_SESSION))
        croak("%s::%s: not a session object", H2_SESSION, fn);
    h = INT2PTR(pagi_h2 *, SvIV(SvRV(self)));
    if (!h)
        croak("%s::%s: the session was freed", H2_SESSION, fn);
    return h;
}

/* A whole number from the settings hash (present: the facade filled every key) */
static UV
h2_setting(pTHX_ HV *hv, const char *key)
{
    SV **v = hv_fetch(hv, key, (I32)strlen(key), 0);
    if (!v || !SvOK(*v))
        croak("%s::_new: setting %s is missing", H2_PKG, key);
    return SvUV(*v);
}

/* (1, ...) or (undef, $message) for an h2 submission's result */
#define H2_APP_RESULT(rc, r, names, fn) STMT_START {                         \
        if ((rc) == PAGI_ERROR) {                                           \
            EXTEND(SP, 2);                                                  \
            PUSHs(&PL_sv_undef);                                            \
            mPUSHs(app_error_message(aTHX_ &(r), (names)));                 \
            XSRETURN(2);                                                    \
        }                                                                   \
        if ((rc) != PAGI_DONE)                                              \
            croak_panic(aTHX_ H2_SESSION, (fn));                            \
    } STMT_END

/* ---- WebSocket ------------------------------------------------------------------- */

/* A Perl number as the integer limit m with (len > number) == (len > m) for every
 * length len >= 0: the floor of a fraction; NaN and numbers above IV_MAX never bite */
static int64_t
ws_limit(pTHX_ SV *sv)
{
    NV nv;
    SvGETMAGIC(sv);
    if (SvIOK(sv))
        return SvIsUV(sv) && SvUVX(sv) > (UV)IV_MAX ? (int64_t)IV_MAX : (int64_t)SvIVX(sv);
    nv = SvNV_nomg(sv);
    if (Perl_isnan(nv) || nv >= (NV)IV_MAX)
        return (int64_t)IV_MAX;
    if (nv < -1.0)
        return -1;
    return (int64_t)Perl_floor(nv);
}

/* The compression context behind $self, croaking on misuse */
static pagi_deflate *
deflate_self(pTHX_ SV *self, const char *fn)
{
    pagi_deflate *h;
    if (!SvROK(self) || !sv_derived_from(self, WS_DEFLATE))
        croak("%s::%s: not a compression context", WS_DEFLATE, fn);
    h = INT2PTR(pagi_deflate *, SvIV(SvRV(self)));
    if (!h)
        croak("%s::%s: the context was freed", WS_DEFLATE, fn);
    return h;
}

/* A whole number from the parameters hash (present: the facade filled every key) */
static IV
deflate_param(pTHX_ HV *hv, const char *key)
{
    SV **v = hv_fetch(hv, key, (I32)strlen(key), 0);
    if (!v || !SvOK(*v))
        croak("%s::_new_deflate: parameter %s is missing", WS_PKG, key);
    return SvIV(*v);
}

MODULE = PAGI::Server::Protocol::HTTP1::XS    PACKAGE = PAGI::Server::Protocol::HTTP1::XS

PROTOTYPES: DISABLE

BOOT:
{
    MY_CXT_INIT;
    static const pagi_layout layout[] = PAGI_LAYOUT;
    const char *mismatch = "";
    if (!pagi_abi_check(layout, sizeof(layout) / sizeof(layout[0]), &mismatch))
        croak("%s: perl/pagi_server.h does not match the Rust library (src/ffi.rs) at %s;"
              " fix the one that is wrong and rebuild with 'perl Makefile.PL && make'",
              PKG, mismatch);
    pagi_init();
    init_cache(aTHX_ &MY_CXT);
}

void
CLONE(...)
  CODE:
    {
        MY_CXT_CLONE;
        init_cache(aTHX_ &MY_CXT);
    }

void
parse_request(buf, max_header_size, max_headers, max_line)
    SV *buf
    IV max_header_size
    IV max_headers
    IV max_line
  PREINIT:
    STRLEN len;
    const unsigned char *p;
    int defined;
    pagi_request r;
    int rc;
  PPCODE:
    p = (const unsigned char *)arg_bytes(aTHX_ buf, &len, &defined, PKG, "parse_request",
                                         "the buffer");
    rc = pagi_parse_request(p, len, (int64_t)max_header_size, (int64_t)max_headers,
                            (int64_t)max_line, &r);
    EXTEND(SP, 2);
    if (rc == PAGI_DONE) {
        dMY_CXT;
        const my_cxt_t *cx = &MY_CXT;
        HV *hv = newHV();
        AV *headers = r.n_headers ? sized_av(aTHX_ (SSize_t)r.n_headers) : newAV();
        SV *path;
        size_t i;
        hv_ksplit(hv, RESULT_KEYS);
        if (r.n_headers) {
            SV **slot = AvARRAY(headers);
            for (i = 0; i < r.n_headers; i++) {
                AV *pair = sized_av(aTHX_ 2);
                AvARRAY(pair)[0] = known_sv(aTHX_ cx, r.headers[i].name_id, r.headers[i].name);
                AvARRAY(pair)[1] = span_sv(aTHX_ cx, r.headers[i].value);
                AvFILLp(pair) = 1;
                slot[i] = newRV_noinc((SV *)pair);
            }
            AvFILLp(headers) = (SSize_t)r.n_headers - 1;
        }
        path = span_sv(aTHX_ cx, r.path);
        if (r.path_utf8)
            SvUTF8_on(path);    /* well-formed UTF-8, checked by Rust: utf8::decode */
        STORE(hv, K_METHOD, known_sv(aTHX_ cx, r.method_id, r.method));
        STORE(hv, K_PATH, path);
        STORE(hv, K_RAW_PATH, span_sv(aTHX_ cx, r.raw_path));
        STORE(hv, K_QUERY_STRING, span_sv(aTHX_ cx, r.query_string));
        STORE(hv, K_HTTP_VERSION, SHARED_COPY(r.http_minor ? cx->v11 : cx->v10));
        STORE(hv, K_HEADERS, newRV_noinc((SV *)headers));
        /* The other facts only when set (doc/codec.md): a plain keep-alive GET is just
           the six scope keys */
        if (!r.keep_alive)
            STORE(hv, K_CLOSE, newSViv(1));
        if (r.content_length >= 0)
            STORE(hv, K_CONTENT_LENGTH, newSViv((IV)r.content_length));
        if (r.chunked)
            STORE(hv, K_CHUNKED, newSViv(1));
        if (r.upgrade.ptr)
            STORE(hv, K_UPGRADE, span_sv(aTHX_ cx, r.upgrade));
        if (r.ws_key.ptr)
            STORE(hv, K_WS_KEY, span_sv(aTHX_ cx, r.ws_key));
        if (r.ws_version.ptr)
            STORE(hv, K_WS_VERSION, span_sv(aTHX_ cx, r.ws_version));
        if (r.sse)
            STORE(hv, K_SSE, newSViv(1));
        if (r.expect_continue)
            STORE(hv, K_EXPECT_CONTINUE, newSViv(1));
        mPUSHs(newRV_noinc((SV *)hv));
        mPUSHi((IV)r.consumed);
    }
    else if (rc == PAGI_PARTIAL) {
        PUSHs(&PL_sv_undef);
        mPUSHi(0);
    }
    else if (rc == PAGI_ERROR) {
        dMY_CXT;
        mPUSHs(error_ref(aTHX_ &MY_CXT, PAGI_TABLE_HTTP, r.error));
        mPUSHi(0);
    }
    else {
        croak_panic(aTHX_ PKG, "parse_request");
    }

void
decode_chunked(buf, state, max_trailer_size)
    SV *buf
    IV state
    IV max_trailer_size
  PREINIT:
    STRLEN len;
    const unsigned char *p;
    int defined;
    pagi_chunked c;
    int rc;
  PPCODE:
    p = (const unsigned char *)arg_bytes(aTHX_ buf, &len, &defined, PKG, "decode_chunked",
                                         "the buffer");
    rc = pagi_decode_chunked(p, len, (int64_t)state, (int64_t)max_trailer_size, &c);
    EXTEND(SP, 3);
    if (rc == PAGI_DONE) {
        SV *data = newSV(c.data_len + 1);
        char *d = SvPVX(data);
        size_t i;
        SvPOK_on(data);
        for (i = 0; i < c.n_ranges; i++) {
            Copy(p + c.ranges[i].start, d, c.ranges[i].len, char);
            d += c.ranges[i].len;
        }
        SvCUR_set(data, c.data_len);
        *SvEND(data) = '\0';
        mPUSHs(data);
        mPUSHi((IV)c.consumed);
        mPUSHi((IV)c.state);
    }
    else if (rc == PAGI_ERROR) {
        dMY_CXT;
        mPUSHs(error_ref(aTHX_ &MY_CXT, PAGI_TABLE_HTTP, c.error));
        mPUSHi(0);
        mPUSHi((IV)c.state);
    }
    else {
        croak_panic(aTHX_ PKG, "decode_chunked");
    }

void
serialize_response(status, headers = &PL_sv_undef, flags = &PL_sv_undef, body = &PL_sv_undef)
    SV *status
    SV *headers
    SV *flags
    SV *body
  PREINIT:
    pagi_field_in stack[STACK_FIELDS];
    SV *stack_names[2 * STACK_FIELDS];
    pagi_field_in *fields;
    SV **names;
    SV *misuse;
    size_t n;
    STRLEN slen = 0;
    const char *s = "";
    int has_body;
    STRLEN blen = 0;
    const char *b = NULL;
    UV f = 0;
    pagi_response r;
    int rc;
  PPCODE:
    /* A body with characters is misuse, whatever else is wrong (as in the PP code) */
    b = arg_bytes(aTHX_ body, &blen, &has_body, PKG, "serialize_response", "the body");
    SvGETMAGIC(status);
    if (SvOK(status))
        s = SvPV_nomg_const(status, slen);
    n = collect_fields(aTHX_ headers, stack, &fields, &names, stack_names, &misuse,
                       "serialize_response");
    SvGETMAGIC(flags);
    if (SvOK(flags))
        f = (UV)SvIV_nomg(flags);
    rc = pagi_serialize_response((const unsigned char *)s, slen, fields, n, (uint32_t)(f & PAGI_FLAGS),
                                 has_body, blen, &r);
    if (rc == PAGI_DONE && misuse)
        croak_sv(misuse);
    if (rc == PAGI_DONE) {
        EXTEND(SP, 4);
        mPUSHs(head_and_body(aTHX_ &r, r.append_body ? b : NULL, blen));
        mPUSHi(r.mode);
        mPUSHi(r.close);
        if (r.length < 0)
            PUSHs(&PL_sv_undef);
        else
            mPUSHi((IV)r.length);
    }
    else if (rc == PAGI_ERROR) {
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        mPUSHs(app_error_message(aTHX_ &r, names));
    }
    else {
        croak_panic(aTHX_ PKG, "serialize_response");
    }

SV *
serialize_chunk(data = &PL_sv_undef)
    SV *data
  PREINIT:
    unsigned char prefix[24];
    size_t plen;
    STRLEN len = 0;
    const char *p = NULL;
    int defined;
  CODE:
    p = arg_bytes(aTHX_ data, &len, &defined, PKG, "serialize_chunk", "the body");
    if (len == 0) {
        RETVAL = newSVpvs("");
    }
    else {
        char *d;
        plen = pagi_chunk_prefix(len, prefix);
        if (plen == 0)
            croak_panic(aTHX_ PKG, "serialize_chunk");
        RETVAL = newSV(plen + len + 3);
        SvPOK_on(RETVAL);
        d = SvPVX(RETVAL);
        Copy(prefix, d, plen, char);
        Copy(p, d + plen, len, char);
        d[plen + len] = '\r';
        d[plen + len + 1] = '\n';
        SvCUR_set(RETVAL, plen + len + 2);
        *SvEND(RETVAL) = '\0';
    }
  OUTPUT:
    RETVAL

SV *
check_headers(headers = &PL_sv_undef, status = NULL)
    SV *headers
    SV *status
  PREINIT:
    pagi_field_in stack[STACK_FIELDS];
    SV *stack_names[2 * STACK_FIELDS];
    pagi_field_in *fields;
    SV **names;
    SV *misuse;
    size_t n;
    pagi_response r;
    int rc;
  CODE:
    /* A status given (a second argument, even undef) first: a response head's */
    if (status) {
        STRLEN slen = 0;
        const char *s = NULL;
        SvGETMAGIC(status);
        if (SvOK(status))
            s = SvPV_nomg_const(status, slen);
        rc = pagi_check_status((const unsigned char *)s, slen);
        if (rc == PAGI_ERROR) {
            ST(0) = sv_2mortal(app_message(aTHX_ PAGI_BAD_STATUS, NULL));
            XSRETURN(1);
        }
        if (rc != PAGI_DONE)
            croak_panic(aTHX_ PKG, "check_headers");
    }
    /* The shape first: the connection's http.response.start relies on this to
       fail the send (serialize_response treats a bad shape as misuse) */
    if (!headers_shape_ok(aTHX_ headers)) {
        ST(0) = sv_2mortal(app_message(aTHX_ PAGI_BAD_SHAPE, NULL));
        XSRETURN(1);
    }
    n = collect_fields(aTHX_ headers, stack, &fields, &names, stack_names, &misuse,
                       "check_headers");
    rc = pagi_check_headers(fields, n, &r);
    if (rc == PAGI_DONE && misuse)
        croak_sv(misuse);
    if (rc == PAGI_DONE)
        XSRETURN_UNDEF;
    if (rc != PAGI_ERROR)
        croak_panic(aTHX_ PKG, "check_headers");
    RETVAL = app_error_message(aTHX_ &r, names);
  OUTPUT:
    RETVAL

void
set_server_header(value = &PL_sv_undef)
    SV *value
  PREINIT:
    STRLEN len = 0;
    const char *p;
    int defined;
    int rc;
  CODE:
    /* undef or "": no Server field */
    p = arg_bytes(aTHX_ value, &len, &defined, PKG, "set_server_header", "the value");
    rc = pagi_set_server((const unsigned char *)(defined ? p : NULL), defined ? len : 0);
    if (rc == PAGI_ERROR)
        croak("%s::set_server_header: not a valid field value (CR, LF or NUL)", PKG);
    if (rc != PAGI_DONE)
        croak_panic(aTHX_ PKG, "set_server_header");

void
serialize_trailers(headers = &PL_sv_undef)
    SV *headers
  PREINIT:
    pagi_field_in stack[STACK_FIELDS];
    SV *stack_names[2 * STACK_FIELDS];
    pagi_field_in *fields;
    SV **names;
    SV *misuse;
    size_t n;
    pagi_response r;
    int rc;
  PPCODE:
    n = collect_fields(aTHX_ headers, stack, &fields, &names, stack_names, &misuse,
                       "serialize_trailers");
    rc = pagi_serialize_trailers(fields, n, &r);
    if (rc == PAGI_DONE && misuse)
        croak_sv(misuse);
    if (rc == PAGI_DONE) {
        XPUSHs(sv_2mortal(newSVpvn((const char *)r.head, r.head_len)));
    }
    else if (rc == PAGI_ERROR) {
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        mPUSHs(app_error_message(aTHX_ &r, names));
    }
    else {
        croak_panic(aTHX_ PKG, "serialize_trailers");
    }

SV *
connection_info(fd)
    SV *fd
  PREINIT:
    pagi_conninfo ci;
    int rc;
    AV *av;
  CODE:
    SvGETMAGIC(fd);
    if (!SvOK(fd))
        XSRETURN_UNDEF;
    rc = pagi_connection_info((int)SvIV_nomg(fd), &ci);
    if (rc == PAGI_PANIC)
        croak_panic(aTHX_ PKG, "connection_info");
    if (rc == 0)
        XSRETURN_UNDEF;
    av = newAV();
    if (ci.local.kind == 2) {
        av_push(av, newSV(0));
        av_push(av, newSV(0));
        av_push(av, newSVpvn(ci.local.len ? (const char *)ci.local.text : "", ci.local.len));
        av_push(av, newSV(0));
    }
    else {
        if (ci.peer.kind == 1) {
            av_push(av, endpoint_host(aTHX_ &ci.peer));
            av_push(av, newSViv(ci.peer.port));
        }
        if (ci.local.kind == 1) {
            av_push(av, endpoint_host(aTHX_ &ci.local));
            av_push(av, newSViv(ci.local.port));
        }
    }
    RETVAL = newRV_noinc((SV *)av);
  OUTPUT:
    RETVAL

void
accept_socket(listener, nodelay, want_local)
    SV *listener
    int nodelay
    int want_local
  PREINIT:
    pagi_accepted a;
    int rc;
    IO *io;
    SV *fh;
  PPCODE:
    /* (fd, peer host, port, local host, port): a new connection on the listening
     * handle, non-blocking and close-on-exec; () with $! set when none could be taken */
    io = sv_2io(listener);
    if (!IoIFP(io)) {
        SETERRNO(EBADF, RMS_IFI);
        XSRETURN_EMPTY;
    }
    rc = pagi_accept(PerlIO_fileno(IoIFP(io)), nodelay, want_local, &a);
    if (rc == PAGI_PANIC)
        croak_panic(aTHX_ PKG, "accept_socket");
    if (rc != PAGI_DONE) {
        SETERRNO(a.err, RMS_IFI);
        XSRETURN_EMPTY;
    }
    fh = socket_handle(aTHX_ a.fd);
    if (!fh) {
        int e = errno;
        PerlLIO_close(a.fd);
        SETERRNO(e ? e : EMFILE, RMS_IFI);
        XSRETURN_EMPTY;
    }
    EXTEND(SP, 5);
    mPUSHs(fh);
    if (a.peer.kind == 1) {
        mPUSHs(endpoint_host(aTHX_ &a.peer));
        mPUSHi(a.peer.port);
    }
    else {
        PUSHs(&PL_sv_undef);
        PUSHs(&PL_sv_undef);
    }
    if (a.local.kind == 1) {
        mPUSHs(endpoint_host(aTHX_ &a.local));
        mPUSHi(a.local.port);
    }
    else if (a.local.kind == 2) {
        mPUSHs(endpoint_host(aTHX_ &a.local));
        PUSHs(&PL_sv_undef);
    }

SV *
_reason_phrase(status)
    IV status
  PREINIT:
    size_t len = 0;
    const unsigned char *p;
  CODE:
    p = pagi_reason_phrase((int)status, &len);
    RETVAL = newSVpvn(len ? (const char *)p : "", len);
  OUTPUT:
    RETVAL

void
_error_table(which)
    const char *which
  PPCODE:
    /* One Rust error table ("http", "ws", "app") as [kind, message, number] rows */
    {
        int table = strEQ(which, "ws") ? PAGI_TABLE_WS : strEQ(which, "http") ? PAGI_TABLE_HTTP
            : strEQ(which, "app") ? PAGI_TABLE_APP : -1;
        if (table < 0)
            croak("%s::_error_table: 'http', 'ws' or 'app', not '%s'", PKG, which);
        PUTBACK;
        push_error_table(aTHX_ table);
        SPAGAIN;
    }

IV
_debug_panic(code)
    IV code
  CODE:
    RETVAL = pagi_debug_panic((int)code);
    if (RETVAL == PAGI_PANIC)
        croak_panic(aTHX_ PKG, "_debug_panic");
  OUTPUT:
    RETVAL

MODULE = PAGI::Server::Protocol::HTTP1::XS    PACKAGE = PAGI::Server::Protocol::WebSocket::XS

PROTOTYPES: DISABLE

void
parse_frame(buf, max_payload = &PL_sv_undef, rsv1_ok = &PL_sv_undef)
    SV *buf
    SV *max_payload
    SV *rsv1_ok
  PREINIT:
    STRLEN len;
    const unsigned char *p;
    int defined;
    int64_t max;
    pagi_ws_frame f;
    int rc;
  PPCODE:
    p = (const unsigned char *)arg_bytes(aTHX_ buf, &len, &defined, WS_PKG, "parse_frame", "the buffer");
    max = ws_limit(aTHX_ max_payload);
    rc = pagi_ws_parse_frame(p, len, max, SvTRUE(rsv1_ok) ? 1 : 0, &f);
    EXTEND(SP, 2);
    if (rc == PAGI_DONE) {
        /* [$fin, $opcode, $payload, $rsv1]: the payload unmasked straight into its SV */
        AV *frame = sized_av(aTHX_ 4);
        SV *payload = newSV(f.payload_len + 1);
        SvPOK_on(payload);
        if (pagi_ws_mask(p + f.payload_offset, f.payload_len, f.key, 4,
                         (unsigned char *)SvPVX(payload)) != PAGI_DONE) {
            SvREFCNT_dec(payload);
            SvREFCNT_dec((SV *)frame);
            croak_panic(aTHX_ WS_PKG, "parse_frame");
        }
        SvCUR_set(payload, f.payload_len);
        *SvEND(payload) = '\0';
        AvARRAY(frame)[0] = newSViv(f.fin);
        AvARRAY(frame)[1] = newSViv(f.opcode);
        AvARRAY(frame)[2] = payload;
        AvARRAY(frame)[3] = newSViv(f.rsv1);
        AvFILLp(frame) = 3;
        mPUSHs(newRV_noinc((SV *)frame));
        mPUSHi((IV)f.consumed);
    }
    else if (rc == PAGI_PARTIAL) {
        PUSHs(&PL_sv_undef);
        mPUSHi(0);
    }
    else if (rc == PAGI_ERROR) {
        dMY_CXT;
        mPUSHs(error_ref(aTHX_ &MY_CXT, PAGI_TABLE_WS, f.error));
        mPUSHi(0);
    }
    else {
        croak_panic(aTHX_ WS_PKG, "parse_frame");
    }

SV *
build_frame(opcode, payload = &PL_sv_undef, fin = &PL_sv_undef, rsv1 = &PL_sv_undef)
    SV *opcode
    SV *payload
    SV *fin
    SV *rsv1
  PREINIT:
    STRLEN len;
    const char *p;
    int defined;
    unsigned char header[10];
    size_t hlen;
    UV byte0;
    char *d;
  CODE:
    p = arg_bytes(aTHX_ payload, &len, &defined, WS_PKG, "build_frame", "the payload");
    SvGETMAGIC(fin);
    SvGETMAGIC(rsv1);
    SvGETMAGIC(opcode);
    /* ($fin ? 0x80 : 0) | ($rsv1 ? 0x40 : 0) | $opcode, packed with 'C' (which keeps
       the low byte) */
    byte0 = (SvTRUE_nomg(fin) ? 0x80 : 0) | (SvTRUE_nomg(rsv1) ? 0x40 : 0) | SvUV_nomg(opcode);
    hlen = pagi_ws_frame_header((uint8_t)(byte0 & 0xff), (uint64_t)len, header);
    if (hlen == 0)
        croak_panic(aTHX_ WS_PKG, "build_frame");
    RETVAL = newSV(hlen + len + 1);
    SvPOK_on(RETVAL);
    d = SvPVX(RETVAL);
    Copy(header, d, hlen, char);
    if (len)
        Copy(p, d + hlen, len, char);
    SvCUR_set(RETVAL, hlen + len);
    *SvEND(RETVAL) = '\0';
  OUTPUT:
    RETVAL

IV
utf8_check(bytes = &PL_sv_undef)
    SV *bytes
  PREINIT:
    STRLEN len;
    const char *p;
    int defined;
  CODE:
    p = arg_bytes(aTHX_ bytes, &len, &defined, WS_PKG, "utf8_check", "the string");
    RETVAL = pagi_ws_utf8_check((const unsigned char *)p, len);
    if (RETVAL == PAGI_PANIC)
        croak_panic(aTHX_ WS_PKG, "utf8_check");
  OUTPUT:
    RETVAL

SV *
mask_payload(payload = &PL_sv_undef, key = &PL_sv_undef)
    SV *payload
    SV *key
  PREINIT:
    STRLEN len, klen;
    const char *p, *k;
    int defined;
  CODE:
    p = arg_bytes(aTHX_ payload, &len, &defined, WS_PKG, "mask_payload", "the payload");
    /* as the PP code: undef and "" come back as they are */
    if (!defined)
        XSRETURN_UNDEF;
    if (len == 0)
        XSRETURN_PVN("", 0);
    k = arg_bytes(aTHX_ key, &klen, &defined, WS_PKG, "mask_payload", "the key");
    RETVAL = newSV(len + 1);
    SvPOK_on(RETVAL);
    if (pagi_ws_mask((const unsigned char *)p, len, (const unsigned char *)k, klen,
                     (unsigned char *)SvPVX(RETVAL)) != PAGI_DONE) {
        SvREFCNT_dec(RETVAL);
        croak_panic(aTHX_ WS_PKG, "mask_payload");
    }
    SvCUR_set(RETVAL, len);
    *SvEND(RETVAL) = '\0';
  OUTPUT:
    RETVAL

SV *
_new_deflate(params)
    HV *params
  PREINIT:
    pagi_deflate_params p;
    pagi_deflate *h = NULL;
    int rc;
  CODE:
    /* The facade (new_deflate) checked and completed the hash */
    p.level = (int32_t)deflate_param(aTHX_ params, "level");
    p.mem_level = (int32_t)deflate_param(aTHX_ params, "mem_level");
    p.server_max_window_bits = (uint8_t)deflate_param(aTHX_ params, "server_max_window_bits");
    p.server_no_context_takeover = deflate_param(aTHX_ params, "server_no_context_takeover") ? 1 : 0;
    p.client_no_context_takeover = deflate_param(aTHX_ params, "client_no_context_takeover") ? 1 : 0;
    rc = pagi_deflate_new(&p, &h);
    if (rc == PAGI_ERROR)
        croak("%s::new_deflate: a parameter is out of range", WS_PKG);
    if (rc != PAGI_DONE)
        croak_panic(aTHX_ WS_PKG, "new_deflate");
    RETVAL = newSV(0);
    sv_setref_pv(RETVAL, WS_DEFLATE, (void *)h);
  OUTPUT:
    RETVAL

MODULE = PAGI::Server::Protocol::HTTP1::XS    PACKAGE = PAGI::Server::Protocol::WebSocket::XS::Deflate

PROTOTYPES: DISABLE

void
DESTROY(self)
    SV *self
  CODE:
    if (SvROK(self)) {
        pagi_deflate *h = INT2PTR(pagi_deflate *, SvIV(SvRV(self)));
        sv_setiv(SvRV(self), 0);
        pagi_deflate_free(h);
    }

SV *
compress_message(self, message = &PL_sv_undef)
    SV *self
    SV *message
  PREINIT:
    pagi_deflate *h;
    STRLEN len;
    const char *p;
    int defined;
    pagi_span out;
  CODE:
    h = deflate_self(aTHX_ self, "compress_message");
    p = arg_bytes(aTHX_ message, &len, &defined, WS_DEFLATE, "compress_message", "the message");
    if (pagi_deflate_compress(h, (const unsigned char *)p, len, &out) != PAGI_DONE)
        croak_panic(aTHX_ WS_DEFLATE, "compress_message");
    RETVAL = newSVpvn(out.len ? (const char *)out.ptr : "", out.len);
    pagi_deflate_taken();
  OUTPUT:
    RETVAL

SV *
decompress_message(self, payload = &PL_sv_undef, max_size = &PL_sv_undef, fin = &PL_sv_yes)
    SV *self
    SV *payload
    SV *max_size
    SV *fin
  PREINIT:
    pagi_deflate *h;
    STRLEN len;
    const char *p;
    int defined, rc;
    int64_t max;
    pagi_span out;
    int32_t error = 0;
  CODE:
    /* The inflated bytes, or {error => KIND, message => TEXT} */
    h = deflate_self(aTHX_ self, "decompress_message");
    p = arg_bytes(aTHX_ payload, &len, &defined, WS_DEFLATE, "decompress_message", "the payload");
    max = ws_limit(aTHX_ max_size);
    rc = pagi_deflate_decompress(h, (const unsigned char *)p, len, max, SvTRUE(fin) ? 1 : 0, &out, &error);
    if (rc == PAGI_DONE) {
        RETVAL = newSVpvn(out.len ? (const char *)out.ptr : "", out.len);
        pagi_deflate_taken();
    }
    else if (rc == PAGI_ERROR) {
        dMY_CXT;
        RETVAL = error_ref(aTHX_ &MY_CXT, PAGI_TABLE_WS, error);
        /* (what a bomb inflated before it was stopped is let go too) */
        pagi_deflate_taken();
    }
    else
        croak_panic(aTHX_ WS_DEFLATE, "decompress_message");
  OUTPUT:
    RETVAL

MODULE = PAGI::Server::Protocol::HTTP1::XS    PACKAGE = PAGI::Server::Protocol::HTTP2::XS

PROTOTYPES: DISABLE

void
_new(settings)
    HV *settings
  PREINIT:
    pagi_h2_settings s;
    pagi_h2 *h = NULL;
    int32_t error = 0;
    int rc;
    SV **up;
    AV *rst;
    SV **burst, **rate;
  PPCODE:
    /* The facade (new_session) checked and completed the hash */
    s.max_concurrent_streams = (uint32_t)h2_setting(aTHX_ settings, "max_concurrent_streams");
    s.initial_window_size = (uint32_t)h2_setting(aTHX_ settings, "initial_window_size");
    s.max_frame_size = (uint32_t)h2_setting(aTHX_ settings, "max_frame_size");
    s.max_header_list_size = (uint32_t)h2_setting(aTHX_ settings, "max_header_list_size");
    s.max_headers = (uint64_t)h2_setting(aTHX_ settings, "max_headers");
    s.enable_connect_protocol = h2_setting(aTHX_ settings, "enable_connect_protocol") ? 1 : 0;
    s.enable_push = h2_setting(aTHX_ settings, "enable_push") ? 1 : 0;
    s.upgrade_head = h2_setting(aTHX_ settings, "upgrade_head") ? 1 : 0;
    up = hv_fetchs(settings, "rst_rate_limit", 0);
    if (!up || !SvROK(*up) || SvTYPE(SvRV(*up)) != SVt_PVAV)
        croak("%s::_new: setting rst_rate_limit is missing", H2_PKG);
    rst = (AV *)SvRV(*up);
    burst = av_fetch(rst, 0, 0);
    rate = av_fetch(rst, 1, 0);
    s.rst_burst = burst ? (uint64_t)SvUV(*burst) : 0;
    s.rst_rate = rate ? (uint64_t)SvUV(*rate) : 0;
    s.upgrade.ptr = NULL;
    s.upgrade.len = 0;
    up = hv_fetchs(settings, "upgrade", 0);
    if (up && SvOK(*up)) {
        STRLEN len;
        int defined;
        s.upgrade.ptr = (const unsigned char *)arg_bytes(aTHX_ *up, &len, &defined, H2_PKG,
                                                         "new_session", "upgrade");
        s.upgrade.len = len;
    }
    rc = pagi_h2_new(&s, &h, &error);
    if (rc == PAGI_DONE) {
        SV *obj = newSV(0);
        sv_setref_pv(obj, H2_SESSION, (void *)h);
        mXPUSHs(obj);
    }
    else if (rc == PAGI_ERROR) {
        dMY_CXT;
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        mPUSHs(error_ref(aTHX_ &MY_CXT, PAGI_TABLE_H2, error));
    }
    else {
        croak_panic(aTHX_ H2_PKG, "new_session");
    }

void
_error_table(which)
    const char *which
  PPCODE:
    /* The Rust h2 tables ("h2", "h2req") as [kind, message, number] rows */
    {
        int table = strEQ(which, "h2") ? PAGI_TABLE_H2 : strEQ(which, "h2req") ? PAGI_TABLE_H2REQ : -1;
        if (table < 0)
            croak("%s::_error_table: 'h2' or 'h2req', not '%s'", H2_PKG, which);
        PUTBACK;
        push_error_table(aTHX_ table);
        SPAGAIN;
    }

MODULE = PAGI::Server::Protocol::HTTP1::XS    PACKAGE = PAGI::Server::Protocol::HTTP2::XS::Session

PROTOTYPES: DISABLE

void
DESTROY(self)
    SV *self
  CODE:
    if (SvROK(self)) {
        pagi_h2 *h = INT2PTR(pagi_h2 *, SvIV(SvRV(self)));
        sv_setiv(SvRV(self), 0);
        pagi_h2_free(h);
    }

void
feed(self, buf)
    SV *self
    SV *buf
  PREINIT:
    pagi_h2 *h;
    STRLEN len;
    const unsigned char *p;
    int defined;
    const pagi_h2_event *ev = NULL;
    size_t n = 0;
    int32_t error = 0;
  PPCODE:
    h = h2_self(aTHX_ self, "feed");
    p = (const unsigned char *)arg_bytes(aTHX_ buf, &len, &defined, H2_SESSION, "feed", "the input");
    if (pagi_h2_feed(h, p, len, &ev, &n, &error) != PAGI_DONE)
        croak_panic(aTHX_ H2_SESSION, "feed");
    {
        dMY_CXT;
        EXTEND(SP, 2);
        mPUSHs(h2_events(aTHX_ &MY_CXT, ev, n));
        if (error)
            mPUSHs(error_ref(aTHX_ &MY_CXT, PAGI_TABLE_H2, error));
        else
            PUSHs(&PL_sv_undef);
    }

SV *
events(self)
    SV *self
  PREINIT:
    pagi_h2 *h;
    const pagi_h2_event *ev = NULL;
    size_t n = 0;
  CODE:
    h = h2_self(aTHX_ self, "events");
    if (pagi_h2_events(h, &ev, &n) != PAGI_DONE)
        croak_panic(aTHX_ H2_SESSION, "events");
    {
        dMY_CXT;
        RETVAL = h2_events(aTHX_ &MY_CXT, ev, n);
    }
  OUTPUT:
    RETVAL

SV *
error(self)
    SV *self
  PREINIT:
    pagi_h2 *h;
    int64_t code = 0;
  CODE:
    h = h2_self(aTHX_ self, "error");
    if (pagi_h2_call(h, PAGI_H2_ERROR, 0, 0, &code) != PAGI_DONE)
        croak_panic(aTHX_ H2_SESSION, "error");
    if (!code)
        XSRETURN_UNDEF;
    {
        dMY_CXT;
        RETVAL = error_ref(aTHX_ &MY_CXT, PAGI_TABLE_H2, (int)code);
    }
  OUTPUT:
    RETVAL

SV *
output(self, max = &PL_sv_undef)
    SV *self
    SV *max
  PREINIT:
    pagi_h2 *h;
    pagi_span out;
    size_t limit = (size_t)-1;
  CODE:
    h = h2_self(aTHX_ self, "output");
    SvGETMAGIC(max);
    if (SvOK(max)) {
        IV m = SvIV_nomg(max);
        limit = m > 0 ? (size_t)m : 0;
    }
    if (pagi_h2_output(h, limit, &out) != PAGI_DONE)
        croak_panic(aTHX_ H2_SESSION, "output");
    RETVAL = newSVpvn(out.len ? (const char *)out.ptr : "", out.len);
  OUTPUT:
    RETVAL

void
respond(self, id, status, headers = &PL_sv_undef, end_stream = &PL_sv_undef)
    SV *self
    IV id
    SV *status
    SV *headers
    SV *end_stream
  PREINIT:
    pagi_h2 *h;
    pagi_field_in stack[STACK_FIELDS];
    SV *stack_names[2 * STACK_FIELDS];
    pagi_field_in *fields;
    SV **names;
    SV *misuse;
    size_t n;
    STRLEN slen = 0;
    const char *st = "";
    pagi_response r;
    int rc;
  PPCODE:
    h = h2_self(aTHX_ self, "respond");
    if (!headers_shape_ok(aTHX_ headers)) {
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        mPUSHs(app_message(aTHX_ PAGI_BAD_SHAPE, NULL));
        XSRETURN(2);
    }
    SvGETMAGIC(status);
    if (SvOK(status))
        st = SvPV_nomg_const(status, slen);
    n = collect_fields(aTHX_ headers, stack, &fields, &names, stack_names, &misuse, "respond");
    rc = pagi_h2_respond(h, (int32_t)id, (const unsigned char *)st, slen, fields, n,
                         SvTRUE(end_stream) ? 1 : 0, &r);
    H2_APP_RESULT(rc, r, names, "respond");
    EXTEND(SP, 2);
    mPUSHi(1);
    if (r.length < 0)
        PUSHs(&PL_sv_undef);
    else
        mPUSHi((IV)r.length);

void
send_data(self, id, data, end = &PL_sv_undef)
    SV *self
    IV id
    SV *data
    SV *end
  PREINIT:
    pagi_h2 *h;
    STRLEN len;
    const char *p;
    int defined;
    pagi_response r;
    int rc;
  PPCODE:
    h = h2_self(aTHX_ self, "send_data");
    p = arg_bytes(aTHX_ data, &len, &defined, H2_SESSION, "send_data", "the body");
    rc = pagi_h2_send_data(h, (int32_t)id, (const unsigned char *)p, len, SvTRUE(end) ? 1 : 0, &r);
    H2_APP_RESULT(rc, r, NULL, "send_data");
    mXPUSHi(1);

void
send_trailers(self, id, headers = &PL_sv_undef)
    SV *self
    IV id
    SV *headers
  PREINIT:
    pagi_h2 *h;
    pagi_field_in stack[STACK_FIELDS];
    SV *stack_names[2 * STACK_FIELDS];
    pagi_field_in *fields;
    SV **names;
    SV *misuse;
    size_t n;
    pagi_response r;
    int rc;
  PPCODE:
    h = h2_self(aTHX_ self, "send_trailers");
    if (!headers_shape_ok(aTHX_ headers)) {
        EXTEND(SP, 2);
        PUSHs(&PL_sv_undef);
        mPUSHs(app_message(aTHX_ PAGI_BAD_SHAPE, NULL));
        XSRETURN(2);
    }
    n = collect_fields(aTHX_ headers, stack, &fields, &names, stack_names, &misuse, "send_trailers");
    rc = pagi_h2_send_trailers(h, (int32_t)id, fields, n, &r);
    H2_APP_RESULT(rc, r, names, "send_trailers");
    mXPUSHi(1);

IV
buffered(self, a = &PL_sv_undef, b = &PL_sv_undef)
    SV *self
    SV *a
    SV *b
  ALIAS:
    consumed = PAGI_H2_CONSUMED
    reset = PAGI_H2_RESET
    goaway = PAGI_H2_GOAWAY
    want_write = PAGI_H2_WANT_WRITE
    is_closed = PAGI_H2_IS_CLOSED
    open_streams = PAGI_H2_OPEN_STREAMS
    last_stream_id = PAGI_H2_LAST_STREAM_ID
  PREINIT:
    pagi_h2 *h;
    int op = ix ? ix : PAGI_H2_BUFFERED;
    int64_t result = 0;
    IV id = 0;
    UV arg = 0;
    int rc;
  CODE:
    /* The small operations and queries: buffered($id), consumed($id, $n),
       reset($id, $code = CANCEL), goaway($code = NO_ERROR, $graceful), and the queries
       without arguments */
    h = h2_self(aTHX_ self, GvNAME(CvGV(cv)));
    if (op == PAGI_H2_GOAWAY) {
        arg = SvOK(a) ? SvUV(a) : 0;
        id = SvTRUE(b) ? 1 : 0;
    }
    else {
        id = SvOK(a) ? SvIV(a) : 0;
        if (op == PAGI_H2_RESET)
            arg = SvOK(b) ? SvUV(b) : 8;
        else if (op == PAGI_H2_CONSUMED) {
            IV n = SvOK(b) ? SvIV(b) : 0;
            arg = n > 0 ? (UV)n : 0;
        }
    }
    rc = pagi_h2_call(h, op, (int32_t)id, (uint64_t)arg, &result);
    if (rc != PAGI_DONE)
        croak_panic(aTHX_ H2_SESSION, GvNAME(CvGV(cv)));
    RETVAL = (IV)result;
  OUTPUT:
    RETVAL
