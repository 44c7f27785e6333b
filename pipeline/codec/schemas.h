/* schemas.h - the .avsc files of schemas/, embedded at build time. */
#ifndef PR_SCHEMAS_H
#define PR_SCHEMAS_H

#include <stddef.h>

extern const char pr_schema_declaration[];
extern const char pr_schema_decision[];
extern const char pr_schema_deadletter[];

#endif
