/*
 * batch_pace: see batch_pace.h.
 */

#include "batch_pace.h"


long long
batch_pace_budget(double share, long long configured, long long discovered)
{
    long long tightest = configured;
    long long budget;

    if (tightest <= 0 || (discovered > 0 && discovered < tightest)) {
        tightest = discovered;
    }
    if (tightest <= 0) {
        return 0;
    }
    budget = (long long) (share * (double) tightest);
    return budget >= 1 ? budget : 1;
}


long long
batch_pace_cost(size_t body_bytes, long long max_tokens)
{
    return (long long) (body_bytes / 4) + (max_tokens > 0 ? max_tokens : BATCH_PACE_MAX_TOKENS);
}


bool
batch_pace_admit(batch_pace_t *p, long long now, long long tokens)
{
    long long requests = 0, spent = 0;
    size_t    slot = (size_t) (now % BATCH_PACE_SLOTS);

    for (size_t i = 0; i < BATCH_PACE_SLOTS; i++) {
        if (p->second[i] >= now - BATCH_PACE_WINDOW && p->second[i] <= now) {
            requests += p->requests[i];
            spent += p->tokens[i];
        }
    }
    if (requests > 0
        && ((p->requests_limit > 0 && requests + 1 > p->requests_limit)
            || (p->tokens_limit > 0 && spent + tokens > p->tokens_limit)))
    {
        return false;
    }
    if (p->second[slot] != now) {
        p->second[slot] = now;
        p->requests[slot] = 0;
        p->tokens[slot] = 0;
    }
    p->requests[slot]++;
    p->tokens[slot] += tokens;
    return true;
}


void
batch_pace_refund(batch_pace_t *p, long long sent, long long tokens)
{
    size_t slot = (size_t) (sent % BATCH_PACE_SLOTS);

    if (p->second[slot] == sent && p->requests[slot] > 0) {
        p->requests[slot]--;
        p->tokens[slot] -= tokens < p->tokens[slot] ? tokens : p->tokens[slot];
    }
}


long
batch_pace_backoff_ms(int tries, long base_ms, long cap_ms, double random)
{
    long wait = base_ms;

    for (int i = 1; i < tries && wait < cap_ms; i++) {
        wait *= 2;
    }
    if (wait > cap_ms) {
        wait = cap_ms;
    }
    return wait / 2 + (long) (random * (double) (wait - wait / 2));
}
