#include "avro_json.h"

#include <inttypes.h>
#include <string.h>

static void pr_json_string(struct pr_buf *out, const char *s, size_t len, bool bytes) {
    pr_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            pr_buf_append(out, esc, 2);
        } else if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80)) {
            pr_buf_appendf(out, "\\u%04X", c);
        } else {
            pr_buf_append(out, &s[i], 1);
        }
    }
    pr_buf_append(out, "\"", 1);
}

int pr_avro_to_json(avro_value_t *value, struct pr_buf *out) {
    switch (avro_value_get_type(value)) {
    case AVRO_NULL: pr_buf_append(out, "null", 4); return PR_OK;
    case AVRO_BOOLEAN: {
        int b = 0;
        avro_value_get_boolean(value, &b);
        pr_buf_appendf(out, "%s", b ? "true" : "false");
        return PR_OK;
    }
    case AVRO_INT32: {
        int32_t v = 0;
        avro_value_get_int(value, &v);
        pr_buf_appendf(out, "%" PRId32, v);
        return PR_OK;
    }
    case AVRO_INT64: {
        int64_t v = 0;
        avro_value_get_long(value, &v);
        pr_buf_appendf(out, "%" PRId64, v);
        return PR_OK;
    }
    case AVRO_FLOAT: {
        float v = 0;
        avro_value_get_float(value, &v);
        pr_buf_appendf(out, "%.9g", (double)v);
        return PR_OK;
    }
    case AVRO_DOUBLE: {
        double v = 0;
        avro_value_get_double(value, &v);
        pr_buf_appendf(out, "%.17g", v);
        return PR_OK;
    }
    case AVRO_STRING: {
        const char *s = NULL;
        size_t size = 0;
        avro_value_get_string(value, &s, &size);
        pr_json_string(out, s, size ? size - 1 : 0, false); /* size counts the NUL */
        return PR_OK;
    }
    case AVRO_BYTES: {
        const void *b = NULL;
        size_t size = 0;
        avro_value_get_bytes(value, &b, &size);
        pr_json_string(out, b, size, true);
        return PR_OK;
    }
    case AVRO_ENUM: {
        int index = 0;
        avro_value_get_enum(value, &index);
        avro_schema_t schema = avro_value_get_schema(value);
        const char *symbol = avro_schema_enum_get(schema, index);
        pr_json_string(out, symbol ? symbol : "", symbol ? strlen(symbol) : 0, false);
        return PR_OK;
    }
    case AVRO_RECORD: {
        size_t count = 0;
        avro_value_get_size(value, &count);
        pr_buf_append(out, "{", 1);
        for (size_t i = 0; i < count; i++) {
            avro_value_t field;
            const char *name = "";
            avro_value_get_by_index(value, i, &field, &name);
            if (i) pr_buf_append(out, ", ", 2);
            pr_json_string(out, name, strlen(name), false);
            pr_buf_append(out, ": ", 2);
            if (pr_avro_to_json(&field, out) != PR_OK) return PR_ERR;
        }
        pr_buf_append(out, "}", 1);
        return PR_OK;
    }
    case AVRO_ARRAY: {
        size_t count = 0;
        avro_value_get_size(value, &count);
        pr_buf_append(out, "[", 1);
        for (size_t i = 0; i < count; i++) {
            avro_value_t item;
            avro_value_get_by_index(value, i, &item, NULL);
            if (i) pr_buf_append(out, ", ", 2);
            if (pr_avro_to_json(&item, out) != PR_OK) return PR_ERR;
        }
        pr_buf_append(out, "]", 1);
        return PR_OK;
    }
    case AVRO_UNION: {
        avro_value_t branch;
        avro_value_get_current_branch(value, &branch);
        if (avro_value_get_type(&branch) == AVRO_NULL) {
            pr_buf_append(out, "null", 4);
            return PR_OK;
        }
        /* Avro JSON: a non-null branch is {"type name": value}. */
        avro_schema_t schema = avro_value_get_schema(&branch);
        const char *type_name = avro_schema_type_name(schema);
        pr_buf_append(out, "{", 1);
        pr_json_string(out, type_name, strlen(type_name), false);
        pr_buf_append(out, ": ", 2);
        if (pr_avro_to_json(&branch, out) != PR_OK) return PR_ERR;
        pr_buf_append(out, "}", 1);
        return PR_OK;
    }
    default: return PR_ERR;
    }
}
