-- Budgets (docs/ARCHITECTURE.md, "Budgets"): the snapshot carries the
-- prices, so a change of a price is a change of the configuration, pushed
-- to the data planes as any other.

CREATE TRIGGER prices_config_version AFTER INSERT OR UPDATE OR DELETE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();
