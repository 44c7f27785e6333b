/* Unit tests: identity normalization of DOMAIN.md section 6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "normalize.h"

static void check(size_t (*fn)(const char *, size_t, char *), const char *in, const char *want) {
    char out[256];
    size_t n = fn(in, strlen(in), out);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_text(void **state) {
    (void)state;
    check(pr_norm_text, "  hello,   world!  ", "HELLO WORLD");
    check(pr_norm_text, "O'Brien", "OBRIEN");
    check(pr_norm_text, "N/A", "N A");
    check(pr_norm_text, "n.a.", "NA");
    check(pr_norm_text, "", "");
    check(pr_norm_text, "---", "");
    check(pr_norm_text, "Müller-Lüdenscheidt",
          "M\xc3\xbcLLER L\xc3\xbc"
          "DENSCHEIDT");
    check(pr_norm_text, "深圳 公司", "深圳 公司");
    check(pr_norm_text, "a\tb\nc", "A B C");
}

static void test_names_section6(void **state) {
    (void)state;
    check(pr_norm_name, "Shenzhen Bright Trading Co., Ltd.", "SHENZHEN BRIGHT TRADING");
    check(pr_norm_name, "SHENZHEN BRIGHT TRADING", "SHENZHEN BRIGHT TRADING");
    check(pr_norm_name, "Northgate Reship Services Inc.", "NORTHGATE RESHIP SERVICES");
    check(pr_norm_name, "Acme GmbH & Co", "ACME");
    check(pr_norm_name, "Acme Corp Limited PLC", "ACME");
    check(pr_norm_name, "Costco", "COSTCO");             /* CO inside a word stays */
    check(pr_norm_name, "Co Op Market", "CO OP MARKET"); /* only trailing tokens go */
    check(pr_norm_name, "LTD", "");
}

static void test_addresses_section6(void **state) {
    (void)state;
    check(pr_norm_address, "1234 Elm Street, Apt. 5B", "1234 ELM ST APT 5B");
    check(pr_norm_address, "1234 ELM ST APT 5B", "1234 ELM ST APT 5B");
    check(pr_norm_address, "9 Ocean Boulevard, Suite 200, Floor 3", "9 OCEAN BLVD STE 200 FL 3");
    check(pr_norm_address, "1 Parkway Drive Building 4", "1 PKWY DR BLDG 4");
    check(pr_norm_address, "22 Streetwise Lane", "22 STREETWISE LN");
    check(pr_norm_address, "Apartment 3, 77 Avenue Road", "APT 3 77 AVE RD");
}

static void test_placeholders(void **state) {
    (void)state;
    char out[64];
    const char *missing[] = {"N/A", "n.a.", "NA", "none", " Unknown ", "N / A"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        size_t n = pr_norm_name(missing[i], strlen(missing[i]), out);
        assert_true(pr_norm_is_placeholder(out, n));
    }
    size_t n = pr_norm_name("Nana", 4, out);
    assert_false(pr_norm_is_placeholder(out, n));
    assert_true(pr_str_blank((struct pr_str){"  \t", 3}));
    assert_false(pr_str_blank((struct pr_str){" x ", 3}));
}

static struct pr_party party(const char *name, const char *address, const char *city,
                             const char *postal) {
    struct pr_party p;
    memset(&p, 0, sizeof(p));
    p.name = (struct pr_str){name, (uint32_t)strlen(name)};
    p.address = (struct pr_str){address, (uint32_t)strlen(address)};
    p.city = (struct pr_str){city, (uint32_t)strlen(city)};
    p.postal_code = (struct pr_str){postal, (uint32_t)strlen(postal)};
    p.country = (struct pr_str){"US", 2};
    return p;
}

static void test_consignee_identity_and_key(void **state) {
    (void)state;
    struct pr_buf buf;
    pr_buf_init(&buf);
    struct pr_party a =
        party("Jane O'Neil", "1234 Elm Street, Apt. 5B", "Springfield", "62701-1234");
    pr_consignee_identity(&a, &buf);
    const char *want = "JANE ONEIL|1234 ELM ST APT 5B|627011234";
    assert_int_equal(buf.len, strlen(want));
    assert_memory_equal(buf.data, want, buf.len);

    /* Three spellings of one person give one key. */
    struct pr_party b = party("JANE ONEIL", "1234 ELM ST APT 5B", "SPRINGFIELD", "62701 1234");
    struct pr_party c = party("jane o'neil.", "1234  elm st.,  apt 5b", "springfield", "627011234");
    char ka[65], kb[65], kc[65];
    pr_consignee_key(&a, ka);
    pr_consignee_key(&b, kb);
    pr_consignee_key(&c, kc);
    assert_string_equal(ka, kb);
    assert_string_equal(ka, kc);
    /* The key is the SHA-256 of the identity, lower-case hex. */
    char direct[65];
    pr_sha256_hex(want, strlen(want), direct);
    assert_string_equal(ka, direct);
    assert_int_equal(strlen(ka), 64);
    /* sha256("abc") */
    pr_sha256_hex("abc", 3, direct);
    assert_string_equal(direct, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    struct pr_party d = party("Jane O'Neil", "1234 Elm Street, Apt. 6B", "Springfield", "62701");
    char kd[65];
    pr_consignee_key(&d, kd);
    assert_string_not_equal(ka, kd);

    pr_delivery_address(&a, &buf);
    want = "1234 ELM ST APT 5B SPRINGFIELD";
    assert_int_equal(buf.len, strlen(want));
    assert_memory_equal(buf.data, want, buf.len);
    struct pr_party e = party("x", "1 Main Street", "", "");
    pr_delivery_address(&e, &buf);
    assert_int_equal(buf.len, strlen("1 MAIN ST"));
    assert_memory_equal(buf.data, "1 MAIN ST", buf.len);
    pr_buf_free(&buf);
}

/* The engine computes the key from a record's shared normal forms; it must
 * equal the party-level function for every spelling. */
static void test_record_path_matches_party_path(void **state) {
    (void)state;
    struct pr_party parties[] = {
        party("Jane O'Neil", "1234 Elm Street, Apt. 5B", "Springfield", "62701-1234"),
        party("ACME GmbH & Co", "9 Ocean Boulevard, Suite 200", "", "10 001"),
        party("", "", "Nowhere", ""),
        party("M\xc3\xbcller",
              "Hauptstra\xc3\x9f"
              "e 1",
              "K\xc3\xb6ln", "50667"),
    };
    struct pr_batch batch;
    pr_batch_init(&batch, 4);
    struct pr_sha256 sha;
    pr_sha256_init(&sha);
    struct pr_buf delivery;
    pr_buf_init(&delivery);
    for (size_t i = 0; i < sizeof(parties) / sizeof(parties[0]); i++) {
        struct pr_record *rec = pr_batch_push(&batch);
        rec->decl.consignee = parties[i];
        pr_record_norms(&batch, rec);
        pr_record_consignee_key(&sha, rec);
        char want[65];
        pr_consignee_key(&parties[i], want);
        assert_string_equal(rec->consignee_key, want);
        pr_delivery_address(&parties[i], &delivery);
        assert_int_equal(rec->norms.delivery_address.len, delivery.len);
        assert_memory_equal(rec->norms.delivery_address.ptr, delivery.data, delivery.len);
    }
    pr_buf_free(&delivery);
    pr_sha256_free(&sha);
    pr_batch_destroy(&batch);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_names_section6),
        cmocka_unit_test(test_addresses_section6),
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_consignee_identity_and_key),
        cmocka_unit_test(test_record_path_matches_party_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
