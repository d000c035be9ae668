import { useState, type FormEvent, type ReactNode } from "react";
import { Alert, Autocomplete, Button, Group, Select, Stack, Stepper, Tabs, Text, TextInput } from "@mantine/core";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import { useFieldErrors } from "../api/errors";
import type { ApiKey, Connection, Environment, Resource, Workspace } from "../api/types";
import { useSelection } from "../app/session";
import { rememberKey } from "../app/sessionKeys";
import { CopyValue, PageHeader } from "../components/common";
import { cleanConfig, ProviderConfigFields, useProviders } from "../components/providers";

export function snippets(baseUrl: string, key: string, model: string) {
  return {
    curl: `curl ${baseUrl}/chat/completions \\
  -H "Authorization: Bearer ${key}" \\
  -H "Content-Type: application/json" \\
  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
    node: `import OpenAI from "openai";

const client = new OpenAI({
  baseURL: "${baseUrl}",
  apiKey: "${key}",
});

const answer = await client.chat.completions.create({
  model: "${model}",
  messages: [{ role: "user", content: "Hello!" }],
});
console.log(answer.choices[0].message.content);`,
    python: `from openai import OpenAI

client = OpenAI(base_url="${baseUrl}", api_key="${key}")

answer = client.chat.completions.create(
    model="${model}",
    messages=[{"role": "user", "content": "Hello!"}],
)
print(answer.choices[0].message.content)`,
  };
}

export function Snippets({ keyValue, model }: { keyValue: string; model: string }) {
  const base = `${window.location.origin}/v1`;
  const s = snippets(base, keyValue, model);
  return (
    <Tabs defaultValue="curl">
      <Tabs.List>
        <Tabs.Tab value="curl">curl</Tabs.Tab>
        <Tabs.Tab value="node">Node</Tabs.Tab>
        <Tabs.Tab value="python">Python</Tabs.Tab>
      </Tabs.List>
      {(["curl", "node", "python"] as const).map((k) => (
        <Tabs.Panel key={k} value={k} pt="sm">
          <CopyValue value={s[k]} label={`${k} snippet`} />
        </Tabs.Panel>
      ))}
    </Tabs>
  );
}

function Step({
  onSubmit,
  busy,
  general,
  children,
  submit,
  onBack,
}: {
  onSubmit: () => Promise<void>;
  busy: boolean;
  general: string | null;
  children: ReactNode;
  submit: string;
  onBack?: () => void;
}) {
  return (
    <form
      noValidate
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      <Stack maw={560} mt="md">
        {general && (
          <Alert color="red" role="alert">
            {general}
          </Alert>
        )}
        {children}
        <Group>
          {onBack && (
            <Button variant="default" onClick={onBack}>
              Back
            </Button>
          )}
          <Button type="submit" loading={busy}>
            {submit}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

export default function Wizard() {
  const [active, setActive] = useState(0);
  const [busy, setBusy] = useState(false);
  const errs = useFieldErrors();
  const qc = useQueryClient();
  const sel = useSelection();
  const providers = useProviders();

  const [ws, setWs] = useState<Workspace | null>(null);
  const [env, setEnv] = useState<Environment | null>(null);
  const [conn, setConn] = useState<Connection | null>(null);
  const [resource, setResource] = useState<Resource | null>(null);
  const [key, setKey] = useState<ApiKey | null>(null);

  const [wsName, setWsName] = useState("");
  const [envName, setEnvName] = useState("production");
  const [connName, setConnName] = useState("openai");
  const [provider, setProvider] = useState<string>("openai");
  const [config, setConfig] = useState<Record<string, string>>({});
  const [resName, setResName] = useState("chat");
  const [model, setModel] = useState("gpt-4o-mini");
  const [keyName, setKeyName] = useState("my-app");

  const prov = providers.data?.find((p) => p.id === provider);
  const models = (conn?.allowedModels?.length ? conn.allowedModels : null) ??
    providers.data?.find((p) => p.id === conn?.provider)?.defaultModels ?? [];

  const run = async (fn: () => Promise<void>, known: string[]) => {
    errs.clear();
    setBusy(true);
    try {
      await fn();
      setActive((a) => a + 1);
    } catch (e) {
      errs.fromError(e, (f) => known.some((k) => f === k || f.startsWith(k + ".")));
    } finally {
      setBusy(false);
    }
  };
  const back = () => {
    errs.clear();
    setActive((a) => Math.max(0, a - 1));
  };

  return (
    <>
      <PageHeader title="Getting started" />
      <Text c="dimmed" mb="md">
        From nothing to a first chat completion: a workspace, an environment, a provider connection,
        a resource your clients call by name, and an API key.
      </Text>
      <Stepper active={active} size="sm" allowNextStepsSelect={false} orientation="horizontal" wrap>
        <Stepper.Step label="Workspace">
          <Step
            busy={busy}
            general={errs.general}
            submit="Create workspace"
            onSubmit={() =>
              run(async () => {
                const w = await api<Workspace>("POST", "/workspaces", { name: wsName });
                setWs(w);
                qc.invalidateQueries({ queryKey: ["workspaces"] });
                sel.setWs(w.id);
              }, ["name"])
            }
          >
            <TextInput
              label="Workspace name"
              description="Your organization or team."
              value={wsName}
              onChange={(e) => setWsName(e.currentTarget.value)}
              error={errs.at("name")}
              required
              data-autofocus
            />
            {sel.ws && (
              <Button
                variant="subtle"
                w="fit-content"
                onClick={() => {
                  errs.clear();
                  setWs(sel.ws);
                  setActive(1);
                }}
              >
                Or use the workspace {sel.ws.name}
              </Button>
            )}
          </Step>
        </Stepper.Step>
        <Stepper.Step label="Environment">
          <Step
            busy={busy}
            general={errs.general}
            submit="Create environment"
            onBack={back}
            onSubmit={() =>
              run(async () => {
                const e = await api<Environment>("POST", `/workspaces/${ws!.id}/environments`, {
                  name: envName,
                });
                setEnv(e);
                qc.invalidateQueries({ queryKey: ["environments"] });
                sel.setEnv(e.id);
              }, ["name"])
            }
          >
            <TextInput
              label="Environment name"
              description="production, staging…"
              value={envName}
              onChange={(e) => setEnvName(e.currentTarget.value)}
              error={errs.at("name")}
              required
            />
            {sel.env && ws && sel.ws?.id === ws.id && (
              <Button
                variant="subtle"
                w="fit-content"
                onClick={() => {
                  errs.clear();
                  setEnv(sel.env);
                  setActive(2);
                }}
              >
                Or use the environment {sel.env.name}
              </Button>
            )}
          </Step>
        </Stepper.Step>
        <Stepper.Step label="Connection">
          <Step
            busy={busy}
            general={errs.general}
            submit="Create connection"
            onBack={back}
            onSubmit={() =>
              run(async () => {
                const c = await api<Connection>(
                  "POST",
                  `/workspaces/${ws!.id}/environments/${env!.id}/connections`,
                  { name: connName, provider, config: cleanConfig(config) },
                );
                setConn(c);
                const p = providers.data?.find((x) => x.id === c.provider);
                if (p?.defaultModels.length && !p.defaultModels.includes(model)) setModel(p.defaultModels[0]);
              }, ["name", "provider", "config"])
            }
          >
            <TextInput
              label="Connection name"
              value={connName}
              onChange={(e) => setConnName(e.currentTarget.value)}
              error={errs.at("name")}
              required
            />
            <Select
              label="Provider"
              data={(providers.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
              value={provider}
              onChange={(v) => {
                setProvider(v ?? "openai");
                setConfig({});
              }}
              error={errs.at("provider")}
              allowDeselect={false}
            />
            <ProviderConfigFields provider={prov} value={config} onChange={setConfig} errorAt={errs.at} />
          </Step>
        </Stepper.Step>
        <Stepper.Step label="Resource">
          <Step
            busy={busy}
            general={errs.general}
            submit="Create resource"
            onBack={back}
            onSubmit={() =>
              run(async () => {
                const r = await api<Resource>(
                  "POST",
                  `/workspaces/${ws!.id}/environments/${env!.id}/resources`,
                  {
                    name: resName,
                    model: { provider: conn!.provider, model, connectionId: conn!.id },
                    useFallback: true,
                  },
                );
                setResource(r);
              }, ["name", "model"])
            }
          >
            <TextInput
              label="Resource name"
              description="What your clients send as `model`."
              value={resName}
              onChange={(e) => setResName(e.currentTarget.value)}
              error={errs.at("name")}
              required
            />
            <Autocomplete
              label="Provider model"
              data={models}
              value={model}
              onChange={setModel}
              error={errs.at("model")}
              required
            />
          </Step>
        </Stepper.Step>
        <Stepper.Step label="API key">
          <Step
            busy={busy}
            general={errs.general}
            submit="Create API key"
            onBack={back}
            onSubmit={() =>
              run(async () => {
                const k = await api<ApiKey>(
                  "POST",
                  `/workspaces/${ws!.id}/environments/${env!.id}/api-keys`,
                  { name: keyName, resources: [resource!.id], enabled: true },
                );
                setKey(k);
                rememberKey(k.name, k.key);
              }, ["name", "resources"])
            }
          >
            <TextInput
              label="API key name"
              value={keyName}
              onChange={(e) => setKeyName(e.currentTarget.value)}
              error={errs.at("name")}
              required
            />
            <Text size="sm" c="dimmed">
              It may call the resource “{resource?.name}”.
            </Text>
          </Step>
        </Stepper.Step>
        <Stepper.Completed>
          <Stack mt="md" maw={760} data-testid="wizard-done">
            <Alert color="green" title="Ready">
              Your key is shown this once: copy it now. Calls may take a few seconds to be accepted
              while the data plane receives the new configuration.
            </Alert>
            <Text fw={500}>API key</Text>
            {key?.key && <CopyValue value={key.key} label="API key" />}
            <Text fw={500}>Call it</Text>
            {key?.key && resource && <Snippets keyValue={key.key} model={resource.name} />}
            <Group>
              <Button
                variant="default"
                onClick={() => {
                  setActive(0);
                  setWsName("");
                  setKey(null);
                }}
              >
                Start again
              </Button>
            </Group>
          </Stack>
        </Stepper.Completed>
      </Stepper>
    </>
  );
}
