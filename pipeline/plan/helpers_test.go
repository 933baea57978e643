package plan

import "github.com/rapportsync/rapport/crm"

func crmCompany(id, name string, domains ...string) crm.Company {
	return crm.Company{ID: id, Name: name, Domains: domains}
}
