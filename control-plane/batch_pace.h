/*
 * batch_pace: the batch runner's arithmetic, pure (no I/O, no clock of its
 * own) so the unit tests check it alone: the per-minute budget of a
 * connection and model, the sliding minute that spends it, an item's token
 * cost, and the backoff of retries.
 */

#ifndef CP_BATCH_PACE_H
#define CP_BATCH_PACE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A request of second s counts until second s + 60 included: a minute and
 * the second it started in, so two requests 60 s apart by this clock are
 * never less than a minute apart at the provider.  A slot per second, two
 * more than the window spans, so a slot is never reused within it.
 */
#define BATCH_PACE_WINDOW      60
#define BATCH_PACE_SLOTS       (BATCH_PACE_WINDOW + 2)
#define BATCH_PACE_MAX_TOKENS  1024      /* an item's answer when it sets no max_tokens */

typedef struct {
    long long  requests_limit;           /* per minute, 0: unknown (no bound) */
    long long  tokens_limit;             /* per minute, 0: unknown */
    long long  second[BATCH_PACE_SLOTS]; /* the unix second slot i counts */
    long long  requests[BATCH_PACE_SLOTS];
    long long  tokens[BATCH_PACE_SLOTS];
} batch_pace_t;

/*
 * share of the tightest of a configured and a discovered per-minute limit
 * (each 0 when unknown); 0 when both are unknown, at least 1 otherwise
 */
long long batch_pace_budget(double share, long long configured, long long discovered);

/* the tokens an item may spend: its body's bytes / 4 and its max_tokens
 * (0 or less: BATCH_PACE_MAX_TOKENS) */
long long batch_pace_cost(size_t body_bytes, long long max_tokens);

/*
 * whether one more request of tokens fits the budgets within the window
 * ending at now (unix seconds); counts it when it does.  A request alone
 * in its minute always fits: one larger than the tokens budget would wait
 * for ever otherwise.
 */
bool batch_pace_admit(batch_pace_t *p, long long now, long long tokens);

/* gives back a request counted by batch_pace_admit() at sent (it was never sent) */
void batch_pace_refund(batch_pace_t *p, long long sent, long long tokens);

/*
 * the wait before try tries + 1 (tries >= 1 already made): base_ms doubled
 * by each try past the first, at most cap_ms, the upper half of it drawn
 * from random (0..1) so retries of many deliveries spread
 */
long batch_pace_backoff_ms(int tries, long base_ms, long cap_ms, double random);

#endif
