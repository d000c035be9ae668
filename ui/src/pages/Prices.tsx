import { useMemo, useState } from "react";
import { Button, Group, Modal, NumberInput, Select, Stack, Text, TextInput } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Price } from "../api/types";
import { usePermissions } from "../app/session";
import {
  DataTable,
  DeleteButton,
  ErrorAlert,
  fmtDate,
  FormActions,
  FormError,
  PageHeader,
  toIso,
  toLocal,
} from "../components/common";
import { useProviders } from "../components/providers";

const usd = (v: number | null) => (v === null ? "as input" : `$${v}`);

function PriceForm({ initial, onClose, readOnly }: { initial: Price | null; onClose: () => void; readOnly: boolean }) {
  const providers = useProviders();
  const [provider, setProvider] = useState<string | null>(initial?.provider ?? "openai");
  const [model, setModel] = useState(initial?.model ?? "");
  const [input, setInput] = useState<number | string>(initial?.input ?? "");
  const [output, setOutput] = useState<number | string>(initial?.output ?? "");
  const [cachedInput, setCachedInput] = useState<number | string>(initial?.cachedInput ?? "");
  const [validFrom, setValidFrom] = useState(toLocal(initial?.validFrom));
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(
    async () => {
      const body = {
        provider,
        model,
        input: input === "" ? null : Number(input),
        output: output === "" ? null : Number(output),
        cachedInput: cachedInput === "" ? null : Number(cachedInput),
        validFrom: toIso(validFrom),
      };
      if (initial) await api("PUT", `/prices/${initial.id}`, body);
      else await api("POST", "/prices", body);
      qc.invalidateQueries({ queryKey: ["prices"] });
      onClose();
    },
    fieldsOf("provider", "model", "input", "output", "cachedInput", "validFrom"),
  );
  const amount = (label: string, field: string, value: number | string, set: (v: number | string) => void, description?: string) => (
    <NumberInput
      label={label}
      description={description}
      value={value}
      onChange={set}
      min={0}
      decimalScale={6}
      prefix="$"
      error={errs.at(field)}
      disabled={readOnly}
    />
  );
  return (
    <Modal opened onClose={onClose} title={initial ? `Price of ${initial.model}` : "New price"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <FormError message={errs.general} />
          <Select
            label="Provider"
            data={(providers.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
            value={provider}
            onChange={setProvider}
            error={errs.at("provider")}
            allowDeselect={false}
            disabled={readOnly}
          />
          <TextInput
            label="Model"
            description="Also prices the names it starts, followed by '-' (gpt-4o prices gpt-4o-2024-08-06)."
            value={model}
            onChange={(e) => setModel(e.currentTarget.value)}
            error={errs.at("model")}
            disabled={readOnly}
          />
          {amount("Input", "input", input, setInput, "USD per million prompt tokens.")}
          {amount("Output", "output", output, setOutput, "USD per million completion tokens.")}
          {amount("Cached input", "cachedInput", cachedInput, setCachedInput, "Empty: cached prompt tokens cost as input.")}
          <TextInput
            type="datetime-local"
            label="Valid from"
            description="Empty: now. It stays valid until the next price of this model."
            value={validFrom}
            onChange={(e) => setValidFrom(e.currentTarget.value)}
            error={errs.at("validFrom")}
            disabled={readOnly}
          />
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export default function Prices() {
  const providers = useProviders();
  const [provider, setProvider] = useState<string | null>(null);
  const [model, setModel] = useState("");
  const query = new URLSearchParams();
  if (provider) query.set("provider", provider);
  if (model.trim()) query.set("model", model.trim());
  const q = useQuery({ queryKey: ["prices", query.toString()], queryFn: () => listAll<Price>(`/prices?${query}`) });
  // by provider and model, each model's prices in time order
  const rows = useMemo(
    () =>
      q.data &&
      [...q.data].sort(
        (a, b) =>
          a.provider.localeCompare(b.provider) || a.model.localeCompare(b.model) || a.validFrom.localeCompare(b.validFrom),
      ),
    [q.data],
  );
  const { can } = usePermissions();
  // a price applies to every workspace: changes take access to all of them
  const canChange = (action: string) => can(action, "price:*") && can("workspace:access-all", "workspace:*");
  const [editing, setEditing] = useState<Price | "new" | null>(null);
  return (
    <>
      <PageHeader title="Prices">
        {canChange("price:create") && <Button onClick={() => setEditing("new")}>New price</Button>}
      </PageHeader>
      <Text c="dimmed" mb="md" size="sm">
        The cost of every usage row and audit record: USD per million tokens of the model, at the request's time. A model
        without a price has no cost (shown as —, never $0).
      </Text>
      <Group mb="md">
        <Select
          aria-label="Provider"
          placeholder="Every provider"
          data={(providers.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
          value={provider}
          onChange={setProvider}
          clearable
        />
        <TextInput aria-label="Model" placeholder="Model (exact)" value={model} onChange={(e) => setModel(e.currentTarget.value)} />
      </Group>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Prices"
        loading={q.isLoading}
        rows={rows}
        rowKey={(p) => p.id}
        empty="No price."
        columns={[
          { label: "Provider", render: (p) => p.provider },
          { label: "Model", render: (p) => p.model },
          { label: "Input", render: (p) => usd(p.input) },
          { label: "Output", render: (p) => usd(p.output) },
          { label: "Cached input", render: (p) => usd(p.cachedInput), hideOnMobile: true },
          { label: "Valid", render: (p) => `${fmtDate(p.validFrom)} – ${p.validTo ? fmtDate(p.validTo) : "…"}`, hideOnMobile: true },
        ]}
        actions={(p) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(p)} aria-label={`${canChange("price:update") ? "Edit" : "View"} ${p.model}`}>
              {canChange("price:update") ? "Edit" : "View"}
            </Button>
            {canChange("price:delete") && (
              <DeleteButton what={`price of ${p.model}`} run={() => api("DELETE", `/prices/${p.id}`)} invalidate={[["prices"]]} />
            )}
          </>
        )}
      />
      {editing && (
        <PriceForm
          key={editing === "new" ? "new" : editing.id}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canChange("price:update")}
        />
      )}
    </>
  );
}
