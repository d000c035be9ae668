import { PageHeader } from "../components/common";

export default function ApiKeys() {
  return <PageHeader title="ApiKeys (not built yet)" />;
}
