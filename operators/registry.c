#include "operator.h"

#include <stdlib.h>
#include <string.h>

extern const struct pr_operator_ops pr_op_decode;
extern const struct pr_operator_ops pr_op_validate;
extern const struct pr_operator_ops pr_op_enrich;
extern const struct pr_operator_ops pr_op_policy;
extern const struct pr_operator_ops pr_op_screen;
extern const struct pr_operator_ops pr_op_aggregate;
extern const struct pr_operator_ops pr_op_sample;
extern const struct pr_operator_ops pr_op_score;
extern const struct pr_operator_ops pr_op_route;
extern const struct pr_operator_ops pr_op_encode;
extern const struct pr_operator_ops pr_op_repartition;
extern const struct pr_operator_ops pr_op_repartition_source;

const struct pr_operator_ops *const pr_operator_registry[] = {
    &pr_op_decode, &pr_op_validate,  &pr_op_enrich,      &pr_op_policy,
    &pr_op_screen, &pr_op_aggregate, &pr_op_sample,      &pr_op_score,
    &pr_op_route,  &pr_op_encode,    &pr_op_repartition, &pr_op_repartition_source,
    NULL,
};

const struct pr_operator_ops *pr_operator_lookup(const char *name) {
    for (size_t i = 0; pr_operator_registry[i]; i++)
        if (strcmp(pr_operator_registry[i]->name, name) == 0) return pr_operator_registry[i];
    return NULL;
}

static bool pr_operator_known(const char *name) {
    const struct pr_operator_ops *ops = pr_operator_lookup(name);
    return ops && !ops->internal;
}

void pr_operators_register(void) {
    pr_config_set_operator_check(pr_operator_known);
}

int pr_chain_init(struct pr_chain *chain, const struct pr_config *cfg) {
    struct pr_operator_env env = {.cfg = cfg};
    return pr_chain_init_env(chain, (const char *const *)cfg->chain, cfg->chain_len, &env);
}

int pr_chain_init_stages(struct pr_chain stages[2], const struct pr_config *cfg,
                         const struct pr_operator_env *env1, const struct pr_operator_env *env2) {
    size_t count = cfg->chain_len, split = count;
    for (size_t i = 0; i < count && split == count; i++) {
        const struct pr_operator_ops *ops = pr_operator_lookup(cfg->chain[i]);
        if (ops && ops->keyed) split = i;
    }
    memset(stages, 0, 2 * sizeof(*stages));
    if (split == count)
        return pr_chain_init_env(&stages[0], (const char *const *)cfg->chain, count, env1);
    const char **names = pr_calloc(count + 3, sizeof(*names));
    for (size_t i = 0; i < split; i++) names[i] = cfg->chain[i];
    names[split] = "repartition";
    names[split + 1] = "encode"; /* the dead letters of stage 1 */
    int rc = pr_chain_init_env(&stages[0], names, split + 2, env1);
    if (rc == PR_OK) {
        names[0] = "repartition-source";
        for (size_t i = split; i < count; i++) names[1 + i - split] = cfg->chain[i];
        rc = pr_chain_init_env(&stages[1], names, 1 + count - split, env2);
        if (rc != PR_OK) pr_chain_destroy(&stages[0]);
    }
    free(names);
    return rc;
}

int pr_chain_init_env(struct pr_chain *chain, const char *const *names, size_t count,
                      const struct pr_operator_env *env) {
    const struct pr_config *cfg = env->cfg;
    chain->count = 0;
    chain->ops = pr_calloc(count ? count : 1, sizeof(*chain->ops));
    for (size_t i = 0; i < count; i++) {
        const struct pr_operator_ops *ops = pr_operator_lookup(names[i]);
        if (!ops) {
            pr_error("config %s: key 'chain': unknown operator '%s'", cfg->path, names[i]);
            pr_chain_destroy(chain);
            return PR_ERR;
        }
        struct pr_operator *op = &chain->ops[chain->count];
        op->ops = ops;
        if (ops->init && ops->init(op, env) != PR_OK) {
            pr_error("operator %s failed to start", ops->name);
            pr_chain_destroy(chain);
            return PR_ERR;
        }
        chain->count++;
    }
    return PR_OK;
}

int pr_chain_process(struct pr_chain *chain, struct pr_batch *batch, size_t start,
                     size_t *failed_at) {
    for (size_t i = start; i < chain->count; i++) {
        struct pr_operator *op = &chain->ops[i];
        int64_t t0 = pr_monotonic_us();
        int rc = op->ops->process(op, batch);
        op->stats.busy_us += (uint64_t)(pr_monotonic_us() - t0);
        op->stats.batches++;
        op->stats.records += batch->count;
        if (rc != PR_OP_DONE) {
            *failed_at = i;
            return rc;
        }
    }
    return PR_OP_DONE;
}

void pr_chain_destroy(struct pr_chain *chain) {
    for (size_t i = 0; i < chain->count; i++)
        if (chain->ops[i].ops->destroy) chain->ops[i].ops->destroy(&chain->ops[i]);
    free(chain->ops);
    chain->ops = NULL;
    chain->count = 0;
}
