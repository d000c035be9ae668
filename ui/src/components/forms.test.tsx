import { afterEach, describe, expect, it } from "vitest";
import { useState } from "react";
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { MantineProvider } from "@mantine/core";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { Capacity, Provider } from "../api/types";
import { CapacityEditor, capacitySummary } from "./common";
import { ProviderConfigFields } from "./providers";
import { cleanRouting, RoutingEditor, type Routing } from "./routing";

afterEach(cleanup);

function wrap(ui: React.ReactNode) {
  return render(
    <MantineProvider>
      <QueryClientProvider client={new QueryClient()}>{ui}</QueryClientProvider>
    </MantineProvider>,
  );
}

const openai: Provider = {
  id: "openai",
  name: "OpenAI",
  defaultBaseUrl: "https://api.openai.com/v1",
  configFields: [
    { name: "apiKey", type: "string", required: true, secret: true, description: "API key" },
    { name: "baseUrl", type: "url", required: false, secret: false, description: "endpoint" },
  ],
  defaultModels: ["gpt-4o-mini"],
};

describe("ProviderConfigFields", () => {
  it("renders the catalog's fields, secrets as password inputs, errors at their field", () => {
    wrap(
      <ProviderConfigFields
        provider={openai}
        value={{ apiKey: "********" }}
        onChange={() => {}}
        errorAt={(f) => (f === "config.baseUrl" ? "must be a URL" : undefined)}
        editing
      />,
    );
    const key = screen.getByLabelText(/^apiKey/) as HTMLInputElement;
    expect(key.type).toBe("password");
    expect(key.value).toBe("********");
    const url = screen.getByLabelText(/^baseUrl/) as HTMLInputElement;
    expect(url.type).toBe("text");
    expect(url.getAttribute("aria-invalid")).toBe("true");
    expect(screen.getByText("must be a URL")).toBeTruthy();
  });
});

describe("CapacityEditor", () => {
  it("adds a limit and shows an API error at its entry", () => {
    function Host() {
      const [v, setV] = useState<Capacity[]>([]);
      return (
        <CapacityEditor
          value={v}
          onChange={setV}
          errorAt={(f) => (f === "capacity[0].tokens" ? "must be positive" : undefined)}
        />
      );
    }
    wrap(<Host />);
    fireEvent.click(screen.getByRole("button", { name: "Add a limit" }));
    expect((screen.getByLabelText("Requests") as HTMLInputElement).value).toBe("60");
    expect(screen.getByText("must be positive")).toBeTruthy();
  });

  it("edits a budget in dollars, sent as a number, and clears it to no budget", () => {
    let last: Capacity[] = [{ period: "day", requests: 60, enabled: true }];
    function Host() {
      const [v, setV] = useState<Capacity[]>(last);
      return (
        <CapacityEditor
          value={v}
          onChange={(x) => {
            last = x;
            setV(x);
          }}
          errorAt={(f) => (f === "capacity[0].cost" ? "must be at most 1e9" : undefined)}
        />
      );
    }
    wrap(<Host />);
    const cost = screen.getByLabelText("Cost (USD)") as HTMLInputElement;
    fireEvent.change(cost, { target: { value: "$5.25" } });
    expect(last[0].cost).toBe(5.25);
    expect(cost.value).toBe("$5.25");
    expect(screen.getByText("must be at most 1e9")).toBeTruthy();
    fireEvent.change(cost, { target: { value: "" } });
    expect(last[0].cost).toBeNull();
  });
});

describe("capacitySummary", () => {
  it("writes the limits an entry has, its budget in dollars only when it has one", () => {
    expect(capacitySummary({ period: "minute", requests: 60 })).toBe("60 req / – tok per minute");
    expect(capacitySummary({ period: "day", tokens: 1000, cost: 5 })).toBe("– req / 1000 tok / $5.00 per day");
    expect(capacitySummary({ period: "lifetime", cost: 0.0005 })).toBe("– req / – tok / $0.0005 per lifetime");
  });
});

describe("RoutingEditor", () => {
  const primary = { provider: "openai", model: "gpt-4o-mini", connectionId: "c1" };
  it("adds rules, reorders them, and shows the compiler's error at the expression", () => {
    let last: Routing = { enabled: false, conditions: [] };
    function Host() {
      const [v, setV] = useState<Routing>(last);
      return (
        <RoutingEditor
          value={v}
          onChange={(x) => {
            last = x;
            setV(x);
          }}
          connections={[]}
          primary={primary}
          errorAt={(f) =>
            f === "routing.conditions[1].expression" ? "routing.conditions[1].expression: unexpected end" : undefined
          }
        />
      );
    }
    wrap(<Host />);
    fireEvent.click(screen.getByRole("button", { name: "Add a routing rule" }));
    fireEvent.click(screen.getByRole("button", { name: "Add a routing rule" }));
    fireEvent.change(screen.getByLabelText("Rule 1: expression"), { target: { value: "tokens.input > 1" } });
    expect(screen.getByText("routing.conditions[1].expression: unexpected end")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Move rule 2 up" }));
    expect(last.conditions.map((g) => g.expression)).toEqual(["tokens.input > 4000", "tokens.input > 1"]);
    expect(last.conditions[0].then).toEqual(primary);
  });

  it("drops an empty traffic share", () => {
    const r = cleanRouting({
      enabled: true,
      conditions: [
        { type: "group", id: "a", conditions: [], then: { ...primary, traffic: null } },
        { type: "group", id: "b", conditions: [], then: { ...primary, traffic: 30 } },
      ],
    });
    expect(r.conditions[0].then).toEqual(primary);
    expect(r.conditions[1].then).toEqual({ ...primary, traffic: 30 });
  });
});
