/* The static agent's stand-ins for the two libraries libpq.a calls that
 * Debian ships no static archive for (agent/CMakeLists.txt): GSSAPI
 * (libgssapi_krb5) and LDAP (libldap needs SASL and GnuTLS archives).
 *
 * Every GSSAPI call fails, so libpq behaves as if no Kerberos credential
 * cache existed: gssencmode=prefer (the default) goes on without GSSAPI
 * encryption, gssencmode=require fails with libpq's own message, and a server
 * that asks for gss authentication gets the error below. ldap_init() fails,
 * so an ldap:// line in pg_service.conf is refused by libpq ("could not
 * create LDAP structure"); nothing else of LDAP is reached.
 *
 * The prototypes are GSSAPI's (RFC 2744) and OpenLDAP's, written out because
 * neither header is installed. */
#include <stddef.h>
#include <stdint.h>

typedef uint32_t OM_uint32;
typedef struct {
  OM_uint32 length;
  void* elements;
} gss_OID_desc;
typedef struct {
  size_t length;
  void* value;
} gss_buffer_desc;

#define GSS_S_COMPLETE 0u
#define GSS_S_FAILURE (13u << 16)

static const char kNoGssapi[] =
    "GSSAPI (Kerberos) is not available in the static schemagate-agent; "
    "build it with -DSCHEMAGATE_STATIC_AGENT=OFF for a libpq with GSSAPI";

static gss_OID_desc nt_hostbased_service;
gss_OID_desc* GSS_C_NT_HOSTBASED_SERVICE = &nt_hostbased_service;

static OM_uint32 Fail(OM_uint32* minor) {
  if (minor != NULL) *minor = 0;
  return GSS_S_FAILURE;
}

OM_uint32 gss_acquire_cred(OM_uint32* minor, void* name, OM_uint32 time, void* mechs, int usage,
                           void** cred, void** actual_mechs, OM_uint32* time_rec) {
  return Fail(minor);
}
OM_uint32 gss_import_name(OM_uint32* minor, void* buffer, void* type, void** name) {
  return Fail(minor);
}
OM_uint32 gss_init_sec_context(OM_uint32* minor, void* cred, void** ctx, void* name, void* mech,
                               OM_uint32 flags, OM_uint32 time, void* bindings, void* input,
                               void** actual_mech, gss_buffer_desc* output, OM_uint32* ret_flags,
                               OM_uint32* time_rec) {
  if (output != NULL) {
    output->length = 0;
    output->value = NULL;
  }
  return Fail(minor);
}
OM_uint32 gss_wrap(OM_uint32* minor, void* ctx, int conf, OM_uint32 qop, void* in, int* conf_state,
                   gss_buffer_desc* out) {
  return Fail(minor);
}
OM_uint32 gss_unwrap(OM_uint32* minor, void* ctx, void* in, gss_buffer_desc* out, int* conf_state,
                     OM_uint32* qop) {
  return Fail(minor);
}
OM_uint32 gss_wrap_size_limit(OM_uint32* minor, void* ctx, int conf, OM_uint32 qop,
                              OM_uint32 req_output_size, OM_uint32* max_input_size) {
  return Fail(minor);
}
/* libpq reports a failed call with gss_display_status: one message, then done. */
OM_uint32 gss_display_status(OM_uint32* minor, OM_uint32 status, int type, void* mech,
                             OM_uint32* message_context, gss_buffer_desc* status_string) {
  if (minor != NULL) *minor = 0;
  if (message_context != NULL) *message_context = 0;
  status_string->length = sizeof kNoGssapi - 1;
  status_string->value = (void*)kNoGssapi;
  return GSS_S_COMPLETE;
}
/* Nothing above allocates: releasing is a no-op that empties the handle. */
OM_uint32 gss_release_buffer(OM_uint32* minor, gss_buffer_desc* buffer) {
  if (minor != NULL) *minor = 0;
  if (buffer != NULL) {
    buffer->length = 0;
    buffer->value = NULL;
  }
  return GSS_S_COMPLETE;
}
OM_uint32 gss_release_name(OM_uint32* minor, void** name) {
  if (minor != NULL) *minor = 0;
  return GSS_S_COMPLETE;
}
OM_uint32 gss_release_cred(OM_uint32* minor, void** cred) {
  if (minor != NULL) *minor = 0;
  return GSS_S_COMPLETE;
}
OM_uint32 gss_delete_sec_context(OM_uint32* minor, void** ctx, gss_buffer_desc* token) {
  if (minor != NULL) *minor = 0;
  return GSS_S_COMPLETE;
}

/* LDAP: libpq's ldapServiceLookup starts with ldap_init() and gives up when
 * it returns NULL, so the rest is never called. */
typedef struct ldap LDAP;
typedef struct ldapmsg LDAPMessage;
struct berval;
struct timeval;
#define LDAP_OTHER 0x50

LDAP* ldap_init(const char* host, int port) { return NULL; }
int ldap_set_option(LDAP* ld, int option, const void* value) { return LDAP_OTHER; }
int ldap_simple_bind(LDAP* ld, const char* who, const char* passwd) { return -1; }
int ldap_result(LDAP* ld, int msgid, int all, struct timeval* timeout, LDAPMessage** result) {
  return -1;
}
int ldap_search_st(LDAP* ld, const char* base, int scope, const char* filter, char** attrs,
                   int attrsonly, struct timeval* timeout, LDAPMessage** res) {
  return LDAP_OTHER;
}
int ldap_count_entries(LDAP* ld, LDAPMessage* chain) { return -1; }
LDAPMessage* ldap_first_entry(LDAP* ld, LDAPMessage* chain) { return NULL; }
struct berval** ldap_get_values_len(LDAP* ld, LDAPMessage* entry, const char* target) {
  return NULL;
}
void ldap_value_free_len(struct berval** vals) {}
int ldap_msgfree(LDAPMessage* lm) { return 0; }
int ldap_unbind(LDAP* ld) { return 0; }
char* ldap_err2string(int err) {
  return (char*)"LDAP is not available in the static schemagate-agent";
}
